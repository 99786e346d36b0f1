"""A file cut short is "truncated" wherever the cut falls (Pillow words it "image file is
truncated" in the data but "Truncated File Read" in a header): never "corrupt", never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from iipa.errors import ImageError
from iipa.images import open_image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_cut_inside_header_or_data_is_truncated(fmt):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    cuts = {"JPEG": [27, 100, len(data) // 2, len(data) - 10], "PNG": [20, 41, len(data) // 2]}[fmt]
    for cut in cuts:
        with pytest.raises(ImageError) as err:
            open_image(data[:cut])
        assert err.value.reason == "truncated", (cut, err.value)
