"""The portable conv2d / depthwise kernels' fast paths, host C == numpy bit for bit, on the
shapes the random cases rarely reach: packed two-filter sums split into runs (1x1 over
more than 252 channels, border windows over more than 128 products), extreme inputs and
weights with the largest input offsets (|input + offset| = 255 times -128), odd channel
and pixel counts, strided 1x1 convs, 3x3 depthwise interiors and borders with several
rows of output pixels."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mcuqp.ir import Padding, Requant
from mcuqp.ops.conv2d import ConvAttrs, conv2d_s8, conv_output_hw
from mcuqp.ops.depthwise_conv2d import depthwise_conv2d_s8

from kernel_cases import OK, c_conv, conv_case, i8

# (depthwise, input (n, h, w, c), kernel (kh, kw), out_c, stride, padding (t, b, l, r), dilation)
SHAPES = [
    (False, (1, 5, 7, 300), (1, 1), 5, (1, 1), (0, 0, 0, 0), (1, 1)),  # 1x1, two runs of packed sums
    (False, (1, 3, 3, 600), (1, 1), 3, (1, 1), (0, 0, 0, 0), (1, 1)),  # three runs
    (False, (2, 7, 6, 253), (1, 1), 4, (2, 2), (0, 0, 0, 0), (1, 1)),  # strided 1x1, batch 2
    (False, (1, 6, 5, 9), (1, 1), 7, (1, 1), (0, 0, 0, 0), (1, 1)),  # odd channels, odd pixels
    (False, (1, 4, 5, 8), (1, 1), 4, (2, 2), (0, 2, 0, 3), (1, 1)),  # 1x1, bottom/right padding only
    (False, (1, 6, 6, 40), (3, 3), 6, (1, 1), (1, 1, 1, 1), (1, 1)),  # borders: 360 products
    (False, (1, 8, 9, 130), (2, 2), 3, (1, 1), (1, 0, 1, 0), (2, 2)),  # dilated, long rows
    (False, (1, 49, 10, 1), (10, 4), 6, (2, 2), (4, 5, 1, 1), (1, 1)),  # KWS first layer
    (False, (1, 9, 9, 3), (3, 3), 5, (2, 2), (0, 1, 0, 1), (1, 1)),  # VWW first layer
    (True, (1, 7, 6, 9), (3, 3), 9, (1, 1), (1, 1, 1, 1), (1, 1)),  # 3x3 interior + borders
    (True, (2, 9, 8, 16), (3, 3), 16, (2, 2), (0, 1, 0, 1), (1, 1)),  # strided 3x3
    (True, (1, 5, 5, 6), (3, 3), 12, (1, 1), (1, 1, 1, 1), (1, 1)),  # depth multiplier 2
    (True, (1, 6, 7, 5), (3, 3), 5, (1, 1), (2, 2, 2, 2), (2, 2)),  # dilated
    (True, (1, 3, 2, 4), (3, 3), 4, (1, 1), (1, 1, 1, 1), (1, 1)),  # narrower than the kernel
    (True, (1, 3, 13, 8), (3, 3), 8, (2, 2), (3, 4, 3, 4), (1, 1)),  # windows wholly in the padding
]


def _case(rng, depthwise, x_shape, k, cout, stride, pad, dil, extreme):
    a = ConvAttrs(stride=stride, padding=Padding(*pad), dilation=dil, depth_multiplier=cout // x_shape[3] if depthwise else 1)
    taps = k[0] * k[1] * (1 if depthwise else x_shape[3])
    x, w, bias, a = conv_case(rng, depthwise, a, x_shape, k[0], k[1], cout, taps, "double", edges=True)
    if extreme:
        # |input + offset| = 255 against -128 weights: the largest products the packed sums hold
        sign = 1 if rng.random() < 0.5 else -1
        x = np.full(x.shape, 127 if sign > 0 else -128, np.int8)
        w = np.where(rng.random(w.shape) < 0.9, -128, i8(rng, w.shape)).astype(np.int8)
        # a scale that keeps these accumulators (up to taps * 255 * 128) inside the int8 range
        shift = -(int(np.ceil(np.log2(taps * 255 * 128))) - 7)
        a = replace(a, input_offset=128 if sign > 0 else -127, act_min=-128, act_max=127, output_offset=0,
                    requant=Requant([1 << 30] * cout, [shift] * cout))
        bias = None
    return x, w, bias, a


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{'dw' if s[0] else 'conv'}-{s[1]}-{s[2]}-s{s[4]}" for s in SHAPES])
def test_fast_paths_match_numpy(runtime, shape, extreme):
    depthwise, x_shape, k, cout, stride, pad, dil = shape
    rng = np.random.default_rng(abs(hash((shape, extreme))) % 2**32)
    ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
    for _ in range(4):
        x, w, bias, a = _case(rng, depthwise, x_shape, k, cout, stride, pad, dil, extreme)
        want = ref(x, w, bias, a)
        oh, ow = conv_output_hw(x_shape[1], x_shape[2], k[0], k[1], a)
        assert want.shape == (x_shape[0], oh, ow, cout)
        rc, got = c_conv(runtime, depthwise, x, w, bias, a, want.shape, fill=i8(rng, want.shape))
        assert rc == OK
        assert np.array_equal(got, want), (x_shape, k, a)
        if extreme:
            assert want.min() > -128 and want.max() < 127  # inside the clamp: a wrong sum shows
