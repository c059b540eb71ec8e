#!/usr/bin/env bash
# Makes a current lavapipe (Mesa's Vulkan driver that runs on the CPU) available
# for the Vulkan test pass on Debian 12, whose own lavapipe (Mesa 22.3.6)
# corrupts its heap when several contexts decode on it: the abort storm's test
# process died with "double free or corruption" inside libvulkan_lvp's queue
# thread in about half the runs, with llama.cpp's decodes serialized or not,
# while Mesa 25.0.7's lavapipe (Debian's bookworm-backports) passed every run.
# It unpacks bookworm-backports' mesa-vulkan-drivers, mesa-libgallium and the
# libdrm they need into a private folder with an ICD manifest naming that
# driver by its full path; nothing on the system changes, everything comes
# from Debian's archive.
# Prints two shell assignments to eval (for the Vulkan pass only):
#   eval "$(bash scripts/debian-lavapipe.sh)"   # sets VK_ICD_FILENAMES and LD_LIBRARY_PATH
# Cache folder: $1, default ~/.cache/genai-native/lavapipe
set -euo pipefail
dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/genai-native/lavapipe}"
version="25.0.7-2~bpo12+1"
drm="2.4.123-1~bpo12+1"
lib="$dir/root/usr/lib/x86_64-linux-gnu"
say() { printf 'export VK_ICD_FILENAMES=%q LD_LIBRARY_PATH=%q\n' "$dir/lvp_icd.json" "$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; }

if [ -f "$dir/lvp_icd.json" ] && [ -f "$lib/libvulkan_lvp.so" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$version" ]; then say; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$work/sources.list"
mkdir -p "$work/lists/partial"
opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
apt-get "${opts[@]}" update -qq >&2
(cd "$work" && apt-get "${opts[@]}" download "mesa-vulkan-drivers=$version" "mesa-libgallium=$version" \
  "libdrm2=$drm" "libdrm-amdgpu1=$drm" "libdrm-intel1=$drm" >&2)
rm -rf "$dir"; mkdir -p "$dir/root"
for f in "$work"/*.deb; do dpkg -x "$f" "$dir/root"; done
test -f "$lib/libvulkan_lvp.so" || { echo "debian-lavapipe: no libvulkan_lvp.so in the unpacked packages" >&2; exit 1; }
printf '{ "file_format_version": "1.0.0", "ICD": { "library_path": "%s", "api_version": "1.4.305" } }\n' "$lib/libvulkan_lvp.so" >"$dir/lvp_icd.json"
echo "$version" >"$dir/version"
say
