// Precompiled header for the CMake build: the libtorch headers every translation unit uses.
#pragma once
#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/nn.h>
#include <torch/utils.h>
