{
  # node-gyp / prebuildify build of the same addon as CMakeLists.txt; libtorch and the source
  # list both come from scripts/libtorch.js.
  "targets": [{
    "target_name": "emotorch",
    "sources": ["<!@(node scripts/libtorch.js --sources)"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<!@(node scripts/libtorch.js --include)", "native", "native/distributed/gloo_shim"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED",
                "_GLIBCXX_USE_CXX11_ABI=<!(node scripts/libtorch.js --abi)"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": ["-std=c++<!(node scripts/libtorch.js --std)", "-fexceptions", "-frtti", "-O2", "-fopenmp", "-fvisibility=hidden",
                  "-Wno-unused-parameter", "-Wno-unused-variable"],
    "ldflags": ["<!@(node scripts/libtorch.js --gyp-ldflags)", "-fopenmp", "-Wl,-rpath,'$$ORIGIN/../../.libtorch/torch/lib'"],
    "libraries": ["-ldl"]
  }]
}
