"""The few neural-network layers the example models need, forward and backward, in plain numpy.

Why this exists: the example models must be trained on the test machine in seconds, offline, and PyPI's
torch is a multi-gigabyte CUDA build. A 3×3 convolution on 8×8 images is small enough that im2col plus
one matrix product per layer is fast in numpy, and writing the backward pass by hand is a few lines per
layer. The trade-off is generality: only what the digits CNN uses is here (3×3 stride-1 "same"
convolutions, 2×2 max pooling, ReLU, a dense layer, softmax cross-entropy, Adam), each checked against
finite differences in ``tests/unit/test_models_digits.py``.

Layout is NCHW, and every function keeps the dtype of its inputs: float32 for training and inference,
float64 for the gradient check. Each ``*_forward`` returns ``(out, cache)``; the matching ``*_backward``
takes ``(dout, cache)`` and returns the input gradient (plus parameter gradients where there are any).
"""

from __future__ import annotations

import numpy as np

K = 3  #: convolution kernel size (3×3, stride 1, padding 1: output keeps the input's height and width)


def im2col(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N*H*W, C*9): row ``(n, h, w)`` holds the zero-padded 3×3 patch centred on (h, w),
    ordered ``(c, kh, kw)`` so that ``weight.reshape(F, C*9)`` lines up with it.

    >>> im2col(np.arange(4.0).reshape(1, 1, 2, 2))[0].reshape(3, 3)
    array([[0., 0., 0.],
           [0., 0., 1.],
           [0., 2., 3.]])
    """
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.stack([xp[:, :, i:i + h, j:j + w] for i in range(K) for j in range(K)], axis=2)  # N,C,9,H,W
    return patches.transpose(0, 3, 4, 1, 2).reshape(n * h * w, c * K * K)


def col2im(cols: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add patch gradients back onto the (unpadded) input."""
    n, c, h, w = shape
    patches = cols.reshape(n, h, w, c, K * K).transpose(0, 3, 4, 1, 2)  # N,C,9,H,W
    xp = np.zeros((n, c, h + 2, w + 2), dtype=cols.dtype)
    for k in range(K * K):
        i, j = divmod(k, K)
        xp[:, :, i:i + h, j:j + w] += patches[:, :, k]
    return xp[:, :, 1:-1, 1:-1]


def conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray):
    """3×3 convolution, stride 1, padding 1 (ONNX ``Conv`` with ``pads=[1,1,1,1]``). weight: (F, C, 3, 3)."""
    n, _, h, w = x.shape
    f = weight.shape[0]
    cols = im2col(x)
    out = cols @ weight.reshape(f, -1).T + bias  # (N*H*W, F)
    return out.reshape(n, h, w, f).transpose(0, 3, 1, 2), (cols, x.shape, weight)


def conv_backward(dout: np.ndarray, cache):
    cols, x_shape, weight = cache
    f = weight.shape[0]
    d = dout.transpose(0, 2, 3, 1).reshape(-1, f)  # (N*H*W, F)
    dweight = (d.T @ cols).reshape(weight.shape)
    dbias = d.sum(axis=0)
    dx = col2im(d @ weight.reshape(f, -1), x_shape)
    return dx, dweight, dbias


def relu_forward(x: np.ndarray):
    return np.maximum(x, 0), x > 0


def relu_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return dout * mask


def maxpool_forward(x: np.ndarray):
    """2×2 max pooling, stride 2 (ONNX ``MaxPool`` with ``kernel_shape=[2,2], strides=[2,2]``).

    The backward pass routes each window's gradient to one element (the first maximum), like
    torch and onnxruntime training do.
    """
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = windows.argmax(axis=-1)
    out = np.take_along_axis(windows, arg[..., None], axis=-1)[..., 0]
    return out, (arg, x.shape)


def maxpool_backward(dout: np.ndarray, cache) -> np.ndarray:
    arg, (n, c, h, w) = cache
    windows = np.zeros((*dout.shape, 4), dtype=dout.dtype)
    np.put_along_axis(windows, arg[..., None], dout[..., None], axis=-1)
    return windows.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def dense_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray):
    """y = x @ weight.T + bias, weight (out, in): ONNX ``Gemm`` with ``transB=1``."""
    return x @ weight.T + bias, (x, weight)


def dense_backward(dout: np.ndarray, cache):
    x, weight = cache
    return dout @ weight, dout.T @ x, dout.sum(axis=0)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean cross-entropy over the batch and its gradient with respect to the logits."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(n), labels].mean()
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), labels] -= 1
    return loss, dlogits / n


class Adam:
    """Adam (Kingma & Ba) over a dict of arrays, updated in place."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float | None = None) -> None:
        self.t += 1
        lr = self.lr if lr is None else lr
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            params[k] -= (lr * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(params[k].dtype)
