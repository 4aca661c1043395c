import numpy as np
import pytest
from PIL import Image

from landmask.errors import LandmaskError
from landmask.imageio import read_image, to_grey, write_image


@pytest.mark.parametrize("name, why", [("empty.jpg", "empty file"), ("text.jpg", "not an image"),
                                       ("truncated.jpg", "truncated or corrupt")])
def test_bad_images_get_one_clear_error(data, name, why):
    with pytest.raises(LandmaskError) as e:
        read_image(data / "bad" / name)
    assert name in str(e.value) and why in str(e.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(LandmaskError, match="no such file"):
        read_image(tmp_path / "x.png")
    with pytest.raises(LandmaskError, match="folder"):
        read_image(tmp_path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    import landmask.imageio as io
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(io, "MAX_PIXELS", 10_000)
    with pytest.raises(LandmaskError, match="too large"):
        read_image(tmp_path / "big.png")


def test_exif_orientation_is_honoured(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10] = 255                       # white band on the left
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6                      # "rotate 90° clockwise to display"
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)
    assert out[:10].mean() > 200 and out[-10:].mean() < 50   # the band is now on top


def test_grey_rgba_and_16bit_keep_their_kind(tmp_path):
    Image.fromarray(np.full((8, 9, 4), 100, np.uint8), "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 9), 40000, np.uint16)).save(tmp_path / "b.png")
    assert read_image(tmp_path / "a.png", "keep").shape == (8, 9, 4)
    b = read_image(tmp_path / "b.png", "keep")
    assert b.dtype == np.uint16 and b[0, 0] == 40000
    assert to_grey(b)[0, 0] == 40000 >> 8
    assert read_image(tmp_path / "b.png", "rgb").shape == (8, 9, 3)


def test_write_is_atomic_and_round_trips(tmp_path):
    a = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    write_image(tmp_path / "x.png", a)
    assert (read_image(tmp_path / "x.png") == a).all()
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]   # no temporary left behind
    assert (tmp_path / "x.png").stat().st_mode & 0o044 == 0o044   # readable like any new file (umask 022)


def _profile(space: bytes) -> bytes:
    from PIL import ImageCms
    p = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    p[16:20] = space
    return bytes(p)


def test_a_colour_profile_travels_only_to_pixels_of_its_own_colour_space(tmp_path):
    """A CMYK JPEG's profile on the RGB output, or a grey PNG's on RGBA, would tell viewers to read the
    pixels as something they are not: it is dropped there, kept where it fits."""
    from landmask.imageio import encode_image, decode_with_metadata
    rgb = np.asarray(Image.open("landmask/samples/astronaut.jpg"))
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", icc_profile=_profile(b"CMYK"))
    Image.fromarray(rgb).convert("LA").save(tmp_path / "g.png", icc_profile=_profile(b"GRAY"))
    Image.fromarray(rgb).save(tmp_path / "r.png", icc_profile=_profile(b"RGB "))
    for name, kept in (("c.jpg", False), ("g.png", False), ("r.png", True)):
        img, meta = read_image(tmp_path / name, "keep", metadata=True)
        assert meta.icc is not None
        out = decode_with_metadata(encode_image(img if img.ndim == 3 else np.dstack([img] * 3), name[-3:], metadata=meta),
                                   "keep")[1]
        assert (out.icc is not None) == kept, name
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(grey).save(tmp_path / "grey.png", icc_profile=_profile(b"GRAY"))
    img, meta = read_image(tmp_path / "grey.png", "keep", metadata=True)
    assert decode_with_metadata(encode_image(img, "png", metadata=meta), "keep")[1].icc == meta.icc


def test_a_lossless_webp_stays_lossless(tmp_path):
    from landmask.imageio import encode_image, decode_with_metadata
    rgb = np.asarray(Image.open("landmask/samples/astronaut.jpg"))
    Image.fromarray(rgb).save(tmp_path / "l.webp", lossless=True)
    Image.fromarray(rgb).save(tmp_path / "q.webp", quality=90)
    img, meta = read_image(tmp_path / "l.webp", "keep", metadata=True)
    assert meta.lossless and not read_image(tmp_path / "q.webp", "keep", metadata=True)[1].lossless
    back = decode_with_metadata(encode_image(img, "webp", metadata=meta), "keep")[0]
    assert np.array_equal(back, img)


def test_exif_too_large_for_a_jpeg_is_left_out_of_it(tmp_path):
    """A PNG may carry EXIF over 64 KB; written as JPEG (-o x.jpg) it failed ('cannot encode')."""
    exif = Image.Exif()
    exif[0x010F] = "M" * 70000
    Image.open("landmask/samples/astronaut.jpg").save(tmp_path / "big.png", exif=exif.tobytes())
    img, meta = read_image(tmp_path / "big.png", "keep", metadata=True)
    assert len(meta.exif) > 65535
    write_image(tmp_path / "out.jpg", img, metadata=meta)
    assert read_image(tmp_path / "out.jpg").shape == img.shape


@pytest.mark.parametrize("fmt", ["pnm", "ppm", "pgm", "pbm"])
def test_netpbm_names_take_grey_and_colour_pixels(tmp_path, fmt):
    """A grey .pnm or .ppm photo (or a grey upload sniffed as pnm) could not be written back
    ('cannot encode a (512, 512) uint8 image as .ppm'): the family's grey member is used."""
    from landmask.imageio import decode_with_metadata, encode_image
    grey = np.asarray(Image.open("landmask/samples/astronaut.jpg").convert("L"))
    for img in (grey, np.dstack([grey] * 3), grey.astype(np.uint16) * 257):
        back = decode_with_metadata(encode_image(img, fmt), "keep")[0]
        assert np.array_equal(back, img)


def test_a_gif_keeps_its_colours_and_transparency(tmp_path):
    """A palette GIF came back re-dithered (82 % of pixels off by more than 8 levels) and opaque."""
    from landmask.imageio import decode_with_metadata, encode_image
    Image.open("landmask/samples/astronaut.jpg").convert("P").save(tmp_path / "t.gif", transparency=0)
    img = read_image(tmp_path / "t.gif", "keep")
    assert img.shape[2] == 4 and (img[..., 3] == 0).any()
    back = decode_with_metadata(encode_image(img, "gif"), "keep")[0]
    assert np.array_equal(back[..., 3] == 0, img[..., 3] == 0)
    opaque = img[..., 3] > 0
    assert np.array_equal(back[..., :3][opaque], img[..., :3][opaque])


def test_an_rgba_pam_is_masked_into_a_pam(tmp_path, capsys):
    from landmask.cli import main
    rgba = np.dstack([np.asarray(Image.open("landmask/samples/astronaut.jpg")), np.full((512, 512), 255, np.uint8)])
    (tmp_path / "x.pam").write_bytes(b"P7\nWIDTH 512\nHEIGHT 512\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
                                     + rgba.tobytes())   # the netpbm way: R, G, B, A
    assert main(["mask", str(tmp_path / "x.pam"), "-o", str(tmp_path / "out") + "/", "--threads", "1",
                 "--lips", "solid:red"]) == 0
    assert (tmp_path / "out" / "x.pam").read_bytes()[:2] == b"P7"
    out = read_image(tmp_path / "out" / "x.pam", "keep")
    changed = np.abs(out[..., :3].astype(int) - rgba[..., :3]).max(axis=2) > 60
    assert out.shape == (512, 512, 4) and changed.sum() > 100
    assert (out[changed][:, 0] > 200).mean() > 0.9 and (out[changed][:, 2] < 60).mean() > 0.9   # red, not blue


def test_pam_channels_are_read_and_written_in_rgb_order(tmp_path):
    """OpenCV keeps a PAM's channels in file order: a red P7 pixel was read as blue, and
    --lips solid:red painted blue lips into a PAM."""
    from landmask.imageio import decode_with_metadata, encode_image
    head = b"P7\nWIDTH 2\nHEIGHT 1\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
    img = decode_with_metadata(head + bytes([200, 20, 0, 255, 0, 30, 220, 128]), "keep")[0]
    assert img.tolist() == [[[200, 20, 0, 255], [0, 30, 220, 128]]]
    data = encode_image(img, "pam")
    assert data.endswith(bytes([200, 20, 0, 255, 0, 30, 220, 128]))
    assert decode_with_metadata(encode_image(img[..., :3], "pam"), "keep")[0].tolist() == [[[200, 20, 0], [0, 30, 220]]]
