"""Robust image reading: every format and mode we promise, and every failure named."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from iipa.errors import ImageError
from iipa.images import image_path_for, open_image
from iipa.inputpolicy import InputPolicy
from iipa.inputs import walk_images


@pytest.fixture
def rgb(photos):
    return Image.fromarray(photos["chelsea"]).resize((96, 64))


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"),
                                     ("BMP", "bmp"), ("TIFF", "tif"), ("GIF", "gif")])
def test_formats_open_as_rgb(tmp_path, rgb, fmt, ext):
    path = tmp_path / f"x.{ext}"
    rgb.save(path, fmt)
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (96, 64)
    if fmt in ("PNG", "BMP", "TIFF"):  # lossless
        assert np.array_equal(np.asarray(img), np.asarray(rgb))


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "P", "I;16", "I", "F", "LA", "RGBA"])
def test_modes_become_8bit_rgb(tmp_path, rgb, mode):
    src = rgb.convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        src = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        assert src.mode == "I;16"
    elif mode in ("I", "F"):
        src = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.int32 if mode == "I" else np.float32) *
                              (257 if mode == "I" else 1 / 255.0))
    img = open_image(src)
    assert img.mode == "RGB" and img.size == rgb.size
    if mode in ("I;16", "I", "F", "L"):  # grey levels survive the depth conversion
        assert np.abs(np.asarray(img)[..., 0].astype(int) - np.asarray(rgb.convert("L")).astype(int)).max() <= 1


def test_sixteen_bit_png_file(tmp_path, rgb):
    arr = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(open_image(path))
    assert out.dtype == np.uint8 and abs(int(out.mean()) - int(np.asarray(rgb.convert("L")).mean())) <= 1


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    path = tmp_path / "t.png"
    rgba.save(path)
    assert open_image(path).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert open_image(tmp_path / "p.png").getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, g, b = open_image(path).getpixel((4, 4))
    assert r > 200 and b < 50


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes())
    out = open_image(path)
    assert out.size == (20, 60)
    assert np.asarray(out)[:10].mean() > 200  # the left band is now on top


def test_draft_mode_decodes_large_jpeg_smaller_but_big_enough(tmp_path, photos):
    big = Image.fromarray(photos["astronaut"]).resize((1080, 1080))
    path = tmp_path / "big.jpg"
    big.save(path)
    out = open_image(path, draft_size=(224, 224))
    assert 224 <= min(out.size) < 1080


def test_bytes_and_arrays(photos):
    buf = io.BytesIO()
    Image.fromarray(photos["coffee"]).save(buf, "PNG")
    assert open_image(buf.getvalue()).size == (600, 400)
    assert open_image(photos["coffee"]).size == (600, 400)
    assert open_image(photos["coffee"][..., 0]).mode == "RGB"
    assert open_image(photos["coffee"].astype(np.float32) / 255).size == (600, 400)


def _reason(source, **kw):
    with pytest.raises(ImageError) as exc:
        open_image(source, **kw)
    return exc.value.reason


def test_failures_are_named(tmp_path, rgb, monkeypatch):
    good = tmp_path / "good.jpg"
    rgb.save(good)
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "page.jpg").write_text("<html><body>404</body></html>")
    (tmp_path / "dir.jpg").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.ico", "ICO")
    assert _reason(tmp_path / "trunc.jpg") == "truncated"
    assert _reason(tmp_path / "empty.jpg") == "empty file"
    assert _reason(tmp_path / "page.jpg") == "not an image"
    assert _reason(tmp_path / "missing.jpg") == "not found"
    assert _reason(tmp_path / "dir.jpg") == "unreadable"
    assert _reason(tmp_path / "x.ico") == "unsupported format"
    assert _reason(good, max_pixels=1000) == "decompression bomb"

    def deny(*a, **k):
        raise PermissionError("denied")

    monkeypatch.setattr("builtins.open", deny)
    assert _reason(good) == "unreadable"


def test_real_decompression_bomb(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(path)  # 144 MP, a few kB on disk
    assert path.stat().st_size < 100_000
    assert _reason(path) == "decompression bomb"


def test_image_lookup_by_post_id(tmp_path, rgb):
    rgb.save(tmp_path / "Bx1.webp")
    rgb.save(tmp_path / "Cy2.jpg")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    assert image_path_for(tmp_path, "Bx1").name == "Bx1.webp"
    assert image_path_for(tmp_path, "nope") is None
    assert [os.path.basename(p) for p in walk_images(tmp_path)] == ["Bx1.webp", "Cy2.jpg"]


def test_bytes_and_shape_follow_the_input_policy(tmp_path, rgb):
    """Too many bytes is decided from the size (a path's, the bytes', a stream's), before
    reading; too extreme a shape from the header; a FIFO is never read."""
    import os

    good = tmp_path / "good.jpg"
    rgb.save(good)
    size = good.stat().st_size
    small = InputPolicy(max_bytes=size - 1)
    for source in (good, good.read_bytes(), io.BytesIO(good.read_bytes())):
        with pytest.raises(ImageError) as exc:
            open_image(source, policy=small)
        assert exc.value.reason == "too large" and f"{size:,} bytes > the limit of {size - 1:,}" in str(exc.value)
    assert open_image(good, policy=InputPolicy(max_bytes=size)).size == rgb.size
    Image.new("RGB", (420, 20)).save(tmp_path / "strip.png")  # 21:1
    assert _reason(tmp_path / "strip.png") == "extreme aspect ratio"
    assert open_image(tmp_path / "strip.png", policy=InputPolicy(max_aspect_ratio=21)).size == (420, 20)
    os.mkfifo(tmp_path / "fifo.jpg")  # opening it for reading would wait for a writer forever
    assert _reason(tmp_path / "fifo.jpg") == "unreadable"


def test_score_max_bytes_gives_an_error_row_naming_the_file_and_the_limit(tmp_path, rgb, run_cli, tiny_checkpoint):
    rgb.save(tmp_path / "a.jpg")
    with open(tmp_path / "huge.jpg", "wb") as fh:  # a JPEG, then holes: a sparse file, never read
        fh.write((tmp_path / "a.jpg").read_bytes())
        fh.truncate(3 * 2**30)
    code, out, err = run_cli("score", tmp_path, "--model", tiny_checkpoint, "-f", "csv")
    assert code == 1 and "huge.jpg: too large: 3,221,225,472 bytes > the limit of 67,108,864" in err, err
    assert out.count("a.jpg,") == 1
    code, out, err = run_cli("score", tmp_path / "a.jpg", "--model", tiny_checkpoint, "--max-bytes", "1000")
    assert code == 2 and "a.jpg: too large" in err and "the limit of 1,000" in err, err  # nothing scored: 2
