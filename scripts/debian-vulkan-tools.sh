#!/usr/bin/env bash
# Makes the Vulkan build tools llama.cpp's ggml-vulkan needs available on
# Debian 12, whose glslc (2023.2: no GL_KHR_cooperative_matrix) and Vulkan
# headers (1.3.239: no VK_KHR_cooperative_matrix) are too old. It unpacks
# Debian 13's glslc — with the C/C++ runtime it needs, run through that
# runtime's own loader by a wrapper — and Debian 13's Vulkan headers into a
# private folder; nothing on the system changes, everything comes from
# Debian's archive. Where the system's tools are new enough it uses them.
# Prints two shell assignments to eval:
#   eval "$(bash scripts/debian-vulkan-tools.sh)"   # sets GENAI_GLSLC and GENAI_VULKAN_INCLUDE
# Cache folder: $1, default ~/.cache/genai-native/vulkan-tools
set -euo pipefail
dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/genai-native/vulkan-tools}"
probe_glslc() {  # does "$1" compile a cooperative-matrix shader?
  local t rc; t=$(mktemp -d)
  printf '%s\n' '#version 450' '#extension GL_KHR_cooperative_matrix : enable' '#extension GL_KHR_memory_scope_semantics : enable' \
    'layout(local_size_x = 32) in;' \
    'void main() { coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> m = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0); }' >"$t/t.comp"
  if "$1" --target-env=vulkan1.3 "$t/t.comp" -o "$t/t.spv" >/dev/null 2>&1; then rc=0; else rc=1; fi
  rm -rf "$t"; return $rc
}
probe_headers() {  # do the headers in "$1" declare VK_KHR_cooperative_matrix?
  grep -q "VkPhysicalDeviceCooperativeMatrixFeaturesKHR" "$1/vulkan/vulkan_core.h" 2>/dev/null
}
say() { printf 'export GENAI_GLSLC=%q GENAI_VULKAN_INCLUDE=%q\n' "$1" "$2"; }

sys_glslc=$(command -v glslc || true)
if [ -n "$sys_glslc" ] && probe_glslc "$sys_glslc" && probe_headers /usr/include; then say "$sys_glslc" /usr/include; exit 0; fi
if [ -x "$dir/glslc" ] && probe_glslc "$dir/glslc" && probe_headers "$dir/root/usr/include"; then say "$dir/glslc" "$dir/root/usr/include"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo 'deb http://deb.debian.org/debian trixie main' >"$work/sources.list"
mkdir -p "$work/lists/partial"
opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
apt-get "${opts[@]}" update -qq >&2
(cd "$work" && apt-get "${opts[@]}" download glslc libshaderc1 libc6 libstdc++6 libgcc-s1 libvulkan-dev >&2)
rm -rf "$dir"; mkdir -p "$dir/root"
for f in "$work"/*.deb; do dpkg -x "$f" "$dir/root"; done
cat >"$dir/glslc" <<'SH'
#!/bin/sh
r="$(dirname "$0")/root"
exec "$r/usr/lib64/ld-linux-x86-64.so.2" --library-path "$r/usr/lib/x86_64-linux-gnu" "$r/usr/bin/glslc" "$@"
SH
chmod +x "$dir/glslc"
probe_glslc "$dir/glslc" || { echo "debian-vulkan-tools: the unpacked glslc does not work" >&2; exit 1; }
probe_headers "$dir/root/usr/include" || { echo "debian-vulkan-tools: the unpacked headers lack VK_KHR_cooperative_matrix" >&2; exit 1; }
say "$dir/glslc" "$dir/root/usr/include"
