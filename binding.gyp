# genai-native is built by CMake (cmake-js), not gyp. This file exists for
# tools that look for binding.gyp (node-gyp, @electron/rebuild): its one
# action runs the same CMake build, which writes build/Release/genai_native.node.
{
  "targets": [
    {
      "target_name": "genai_native",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_js_build",
          "inputs": ["CMakeLists.txt"],
          "outputs": ["build/Release/genai_native.node"],
          "action": ["node", "scripts/build-addon.mjs"]
        }
      ]
    }
  ]
}
