#!/bin/bash
# 20 photos without a person from Debian's opencv-doc (4.6.0) sample data, for counting false faces
# (python scripts/detector_report.py ../shared/data --non-faces DEST): a mandrill, a chick, a squirrel,
# Blender's Suzanne twice, a fish, fruit, a painting, buildings, planes, textures.
#   bash scripts/opencv_nonfaces.sh runs/nonfaces2
set -euo pipefail
dest=${1:?usage: opencv_nonfaces.sh DEST}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download opencv-doc >/dev/null 2>&1) \
  || { echo "opencv_nonfaces.sh: apt-get download opencv-doc failed" >&2; exit 1; }
dpkg-deb -x "$work"/opencv-doc_*.deb "$work/x"
src="$work/x/usr/share/doc/opencv-doc/examples/data"
mkdir -p "$dest"
for f in baboon.jpg chicky_512.png squirrel_cls.jpg HappyFish.jpg Blender_Suzanne1.jpg Blender_Suzanne2.jpg \
         butterfly.jpg fruits.jpg orange.jpg apple.jpg smarties.png starry_night.jpg building.jpg home.jpg \
         aero1.jpg aero3.jpg graf1.png leuvenA.jpg box_in_scene.png board.jpg; do
  cp "$src/$f" "$dest/"
done
echo "$(ls "$dest" | wc -l) photos in $dest"
