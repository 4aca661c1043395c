#!/bin/bash
# Real animal photos without a person (Wikimedia Commons photos, CC-BY/CC-BY-SA, credited in each
# activity's README) from Debian's gcompris-qt-data (3.1): the "erase", "explore farm animals" and
# "explore world animals" activities, 57 photos, split alternately (sorted by name) into DEST/train
# (29, for `train-face-check --negative-photos`) and DEST/held (28, for measuring false faces only);
# and the 43 cartoon animals of the "lang" activity (transparent cut-outs) in DEST/cartoons.
#   bash scripts/gcompris_photos.sh runs/animals-gc
set -euo pipefail
dest=${1:?usage: gcompris_photos.sh DEST}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download gcompris-qt-data >/dev/null 2>&1) \
  || { echo "gcompris_photos.sh: apt-get download gcompris-qt-data failed" >&2; exit 1; }
dpkg-deb -x "$work"/gcompris-qt-data_*.deb "$work/x"
rcc="$work/x/usr/share/gcompris-qt/rcc"
python3 "$here/rcc_unpack.py" "$work/u" "$rcc/erase.rcc" "$rcc/explore_farm_animals.rcc" \
  "$rcc/explore_world_animals.rcc" "$rcc/lang.rcc" >/dev/null
act="$work/u/gcompris/src/activities"
mkdir -p "$dest/train" "$dest/held" "$dest/cartoons"
i=0
for f in $( (cd "$act/erase/resource" && ls *.webp | sed 's/^/erase_/'; \
             cd "$act/explore_farm_animals/resource/animals" && ls *.webp | sed 's/^/explore_/'; \
             cd "$act/explore_world_animals/resource/animals" && ls *.webp | sed 's/^/explore_/') | sort); do
  case $f in
    erase_*) src="$act/erase/resource/${f#erase_}" ;;
    *) src=$(ls "$act"/explore_*_animals/resource/animals/"${f#explore_}") ;;
  esac
  if (( i % 2 == 0 )); then cp "$src" "$dest/train/$f"; else cp "$src" "$dest/held/$f"; fi
  i=$((i + 1))
done
for n in animal bear bee beetle bird bug bull butterfly camel cat chicken cow dog dolphin duck fish flies \
         fox frog giraffe gorilla hedgehog hippopotamus horse kangaroo lizard mosquito mouse owl panda pig \
         rabbit reptile rhinoceros shark sheep snail snake spider turkey turtle whale wolf; do
  cp "$act/lang/resource/words_sample/$n.webp" "$dest/cartoons/lang_$n.webp"
done
echo "$(ls "$dest/train" | wc -l) + $(ls "$dest/held" | wc -l) photos, $(ls "$dest/cartoons" | wc -l) cartoons in $dest"
