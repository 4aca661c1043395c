import numpy as np
import pytest

from landmask import geometry as G
from landmask.schemes import IBUG68, KAGGLE15, MUCT76, SCHEMES, convert_points, get_scheme


@pytest.mark.parametrize("scheme", list(SCHEMES.values()), ids=list(SCHEMES))
def test_flip_permutation_is_an_involution_that_swaps_sides(scheme):
    perm = scheme.flip_permutation
    assert sorted(perm) == list(range(len(scheme)))
    assert (perm[perm] == np.arange(len(scheme))).all()
    for i, j in enumerate(perm):
        a, b = scheme.points[i].split("_"), scheme.points[j].split("_")
        if "left" in a or "right" in a:
            assert i != j and [{"left": "right", "right": "left"}.get(w, w) for w in a] == b
        else:
            assert i == j
    if scheme.name == "kaggle15":
        assert scheme.points[perm[scheme.index("mouth_left_corner")]] == "mouth_right_corner"


def test_ibug68_flip_matches_the_standard_index_pairs():
    perm = IBUG68.flip_permutation
    for a, b in [(0, 16), (8, 8), (17, 26), (21, 22), (27, 27), (31, 35), (36, 45), (39, 42),
                 (40, 47), (48, 54), (51, 51), (57, 57), (60, 64), (62, 62), (66, 66)]:
        assert perm[a] == b and perm[b] == a


@pytest.mark.parametrize("scheme", [IBUG68, KAGGLE15])
def test_parts_use_names_of_the_scheme(scheme):
    for part in ("lips", "left_eye", "right_eye", "left_eyebrow", "right_eyebrow"):
        for poly in scheme.parts[part]:
            assert all(n in scheme.points for n in poly)


def test_ibug68_to_kaggle15_matches_the_data_readme_table():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 100, (68, 2))
    k = convert_points(p, "ibug68", "kaggle15")
    want = {"left_eye_center": p[42:48].mean(0), "right_eye_center": p[36:42].mean(0),
            "left_eye_inner_corner": p[42], "left_eye_outer_corner": p[45],
            "right_eye_inner_corner": p[39], "right_eye_outer_corner": p[36],
            "left_eyebrow_inner_end": p[22], "left_eyebrow_outer_end": p[26],
            "right_eyebrow_inner_end": p[21], "right_eyebrow_outer_end": p[17],
            "nose_tip": p[30], "mouth_left_corner": p[54], "mouth_right_corner": p[48],
            "mouth_center_top_lip": p[51], "mouth_center_bottom_lip": p[57]}
    for name, v in want.items():
        np.testing.assert_allclose(k[KAGGLE15.index(name)], v)


def test_muct76_to_kaggle15_takes_pupils_corners_and_brows():
    p = np.arange(152, dtype=float).reshape(76, 2)
    k = convert_points(p, "muct76", "kaggle15")
    for name, idx in {"left_eye_center": 36, "right_eye_center": 31, "right_eye_outer_corner": 27,
                      "left_eye_outer_corner": 32, "right_eyebrow_outer_end": 21, "left_eyebrow_outer_end": 15,
                      "nose_tip": 67, "mouth_right_corner": 48, "mouth_left_corner": 54}.items():
        np.testing.assert_allclose(k[KAGGLE15.index(name)], p[idx])


def test_conversion_keeps_nan_and_flip_commutes_with_conversion():
    p = np.random.default_rng(1).uniform(0, 100, (68, 2))
    p[45] = np.nan
    k = convert_points(p, "ibug68", "kaggle15")
    assert np.isnan(k[KAGGLE15.index("left_eye_outer_corner")]).all()
    assert np.isnan(k[KAGGLE15.index("left_eye_center")]).all()  # mean over a missing point
    q = np.random.default_rng(2).uniform(0, 100, (68, 2))
    a = convert_points(G.flip_points(q, 120, IBUG68.flip_permutation), "ibug68", "kaggle15")
    b = G.flip_points(convert_points(q, "ibug68", "kaggle15"), 120, KAGGLE15.flip_permutation)
    np.testing.assert_allclose(a, b)


def test_unknown_scheme_names_the_choices():
    with pytest.raises(ValueError, match="ibug68"):
        get_scheme("nope")
    with pytest.raises(ValueError):
        convert_points(np.zeros((15, 2)), "kaggle15", "ibug68")
    assert len(MUCT76) == 76 and len(IBUG68) == 68 and len(KAGGLE15) == 15
