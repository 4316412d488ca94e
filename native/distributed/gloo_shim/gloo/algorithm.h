// emotorch declaration shim (see README.md): ProcessGroupGloo.hpp needs nothing from this header.
#pragma once
