#!/bin/bash
# Photos without a person for `landmask train-face-check --negative-photos` (and `train-detector`):
# the 128 non-cartoon animal stamps of Debian's tuxpaint-stamps-default (2022.06.04: cut-outs with
# transparency, mammals, birds, fish, insects...), copied flat into DEST as CATEGORY_NAME.png.
#   bash scripts/animal_photos.sh runs/animals
set -euo pipefail
dest=${1:?usage: animal_photos.sh DEST}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download tuxpaint-stamps-default >/dev/null 2>&1) \
  || { echo "animal_photos.sh: apt-get download tuxpaint-stamps-default failed" >&2; exit 1; }
dpkg-deb -x "$work"/tuxpaint-stamps-default_*.deb "$work/x"
root="$work/x/usr/share/tuxpaint/stamps/animals"
mkdir -p "$dest"
(cd "$root" && find . -name '*.png' ! -path '*cartoon*' | sed 's|^\./||') | while read -r f; do
  cp "$root/$f" "$dest/${f//\//_}"
done
echo "$(ls "$dest" | wc -l) photos in $dest"
