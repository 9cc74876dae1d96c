"""Ground-truth maps on the fine grid and their multi-echo gradient-echo acquisition.

The MR signal is computed where the truth lives, on the 1 mm grid, as complex decay
``S0 B(x) exp(-R2* TE) exp(i 2 pi df(x) TE)`` (receive bias ``B``, smooth off-resonance ``df``),
then averaged over each acquisition voxel (true partial volume: a voxel straddling pallidum and
white matter decays bi-exponentially), and finally given complex Gaussian noise of SD ``sigma``
per channel, so the magnitude is Rician.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .anatomy import FINE_AFFINE, FINE_SHAPE, Anatomy
from .lesions import RIM_R2STAR_FACTOR
from .tissue import CODE_TISSUE, TISSUES

__all__ = [
    "Protocol",
    "acquire",
    "acquisition_affine",
    "rss_magnitude",
    "shim_field",
    "sinus_field",
    "smooth_field",
    "t1w_image",
    "truth_maps",
]


@dataclass(frozen=True)
class Protocol:
    """A site's multi-echo GRE protocol.

    Attributes
    ----------
    echo_times_s : tuple of float
        Echo times in seconds.
    voxel_mm : tuple of int
        Acquisition voxel size, integer multiples of the 1 mm truth grid.
    snr : float
        White-matter S0 over the noise SD per channel, at the acquisition voxel.
    manufacturer : str
    scale : float
        Scanner intensity scale (white-matter S0 in stored units).
    """

    echo_times_s: tuple[float, ...]
    voxel_mm: tuple[int, int, int]
    snr: float
    manufacturer: str = "Simulated"
    scale: float = 1000.0


#: SD (Hz, over the fine grid) of the off-resonance an imperfect shim leaves (:func:`shim_field`).
SHIM_HZ = 8.0


def smooth_field(
    rng: np.random.Generator,
    amplitude: float,
    *,
    wavelength_mm: float = 150.0,
    shape: tuple[int, int, int] = FINE_SHAPE,
) -> NDArray[np.float32]:
    """A smooth random field on a 1 mm grid of ``shape``, ``amplitude * N(0, 1)``-scaled.

    Sum of one random sinusoid per axis (wavelength ~``wavelength_mm``), normalised to unit SD.
    """
    out = np.zeros(shape, dtype=np.float32)
    for axis, n in enumerate(shape):
        x = np.arange(n, dtype=np.float32)
        k = 2 * np.pi / (wavelength_mm * rng.uniform(0.7, 1.3))
        profile = np.sin(k * x + rng.uniform(0, 2 * np.pi)) * np.sqrt(2.0 / 3.0)
        shape = [1, 1, 1]
        shape[axis] = n
        out += profile.reshape(shape).astype(np.float32)
    return amplitude * out


def shim_field(
    rng: np.random.Generator,
    amplitude: float,
    *,
    shape: tuple[int, int, int] = FINE_SHAPE,
) -> NDArray[np.float32]:
    """The imperfect shim: a random harmonic off-resonance (Hz) on a 1 mm grid of ``shape``.

    What is left of the field of the sources outside the head after shimming is harmonic inside
    it (Laplace's equation holds where there is no source), so it is a sum of solid spherical
    harmonics; here the three first-order and three second-order terms (``x``, ``y``, ``z``,
    ``xy``, ``yz``, ``x^2 - y^2`` about the grid centre) with random weights, scaled to SD
    ``amplitude`` over the grid. It takes six uniform draws from ``rng``, as many as
    :func:`smooth_field` (which is not harmonic and no outside source produces: QSM would read
    it as susceptibility).
    """
    weights = np.array([rng.uniform(-1.0, 1.0) for _ in range(6)], dtype=np.float64)
    x, y, z = (
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2) / 100.0).reshape(
            [n if a == axis else 1 for a in range(3)]
        )
        for axis, n in enumerate(shape)
    )
    terms = (x, y, z, x * y, y * z, x * x - y * y)
    out = np.zeros(shape, dtype=np.float32)
    for w, term in zip(weights, terms, strict=True):
        out += np.float32(w) * term
    sd = float(out.std())
    return (amplitude / sd * out).astype(np.float32) if sd > 0 else out


def truth_maps(
    anatomy: Anatomy,
    tissue_r2star: dict[str, float],
    *,
    lesion_factor: float,
    rng: np.random.Generator,
    texture: float = 0.03,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """True R2* (1/s) and S0 (relative) on the fine grid.

    Parameters
    ----------
    anatomy : Anatomy
    tissue_r2star : dict
        Subject's mean R2* per tissue key of :data:`~.tissue.CODE_TISSUE`.
    lesion_factor : float
        Lesion R2* as a fraction of the local white-matter R2*.
    rng : numpy.random.Generator
    texture : float, optional
        Relative SD of smooth within-tissue R2* variation (mean zero over the head).

    Returns
    -------
    r2star, s0 : numpy.ndarray of float32, shape of ``anatomy.labels``
        Zero outside the head.
    """
    lut_r2 = np.zeros(max(CODE_TISSUE) + 1, dtype=np.float32)
    lut_s0 = np.zeros_like(lut_r2)
    for code, tissue in CODE_TISSUE.items():
        lut_r2[code] = tissue_r2star[tissue]
        lut_s0[code] = TISSUES[tissue].s0
    r2 = lut_r2[anatomy.labels]
    s0 = lut_s0[anatomy.labels]
    r2 *= 1.0 + smooth_field(rng, texture, wavelength_mm=60.0, shape=anatomy.labels.shape)
    r2[anatomy.lesions] *= lesion_factor
    if anatomy.lesion_rims is not None:  # iron at the edge of paramagnetic rim lesions
        r2[anatomy.lesion_rims] *= RIM_R2STAR_FACTOR
    s0[anatomy.lesions] *= 1.15  # longer T1/T2, higher PD: lesions are bright on GRE
    r2[~anatomy.head] = 0.0
    s0[~anatomy.head] = 0.0
    return r2, s0


def acquisition_affine(fine_affine: NDArray[np.float64], voxel_mm) -> NDArray[np.float64]:
    """Affine of the grid whose voxel ``(i, j, k)`` averages fine voxels ``f*i .. f*i + f - 1``."""
    f = np.asarray(voxel_mm, dtype=np.float64)
    block = np.diag([*f, 1.0])
    block[:3, 3] = (f - 1.0) / 2.0
    return fine_affine @ block


def sinus_field(
    amplitude_hz: float = 150.0,
    *,
    width_mm: float = 14.0,
    shape: tuple[int, int, int] = FINE_SHAPE,
    affine: NDArray[np.float64] = FINE_AFFINE,
) -> NDArray[np.float32]:
    """Off-resonance (Hz) of an air-filled frontal sinus below the orbitofrontal cortex.

    A Gaussian bump centred in front of and below the frontal lobe (y = +62, z = -30 mm): its
    steep flank crosses frontal white matter and cortex, as the susceptibility field of the
    sinuses does at 3 T (about 100-200 Hz).
    """
    axes = [np.arange(n, dtype=np.float32) + np.float32(affine[i, 3]) for i, n in enumerate(shape)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij", sparse=True)
    r2 = gx**2 + (gy - 62.0) ** 2 + (gz + 30.0) ** 2
    return (amplitude_hz * np.exp(-r2 / (2 * width_mm**2))).astype(np.float32)


def acquire(
    r2star: NDArray[np.float32],
    s0: NDArray[np.float32],
    protocol: Protocol,
    *,
    rng: np.random.Generator,
    r2star_bias: float = 1.0,
    extra_field_hz: NDArray[np.float32] | None = None,
    with_phase: bool = False,
) -> tuple[NDArray[np.float32], float] | tuple[NDArray[np.float32], float, NDArray[np.float32]]:
    """Simulate the magnitude images of ``protocol``.

    Parameters
    ----------
    r2star, s0 : numpy.ndarray, shape (X, Y, Z)
        Truth on the 1 mm grid (1/s; relative units, white matter ~0.7).
    protocol : Protocol
    rng : numpy.random.Generator
    r2star_bias : float, optional
        Multiplicative site bias on R2* (scanner/shim differences).

    Returns
    -------
    magnitude : numpy.ndarray of float32, shape (X, Y, Z, n_echoes)
        On the acquisition grid (see :func:`acquisition_affine`), in stored units.
    sigma : float
        Noise SD per channel, in stored units.
    phase : numpy.ndarray of float32, shape (X, Y, Z, n_echoes)
        Only with ``with_phase``: the phase (radians) of the noisy complex signal.

    Notes
    -----
    ``extra_field_hz`` (e.g. :func:`sinus_field`) adds off-resonance with steep gradients.
    Within each 1 mm voxel the field is taken as linear, so its signal is weighted by the exact
    integral of the phase ramp, ``prod_k sinc(g_k TE)``; summed over an acquisition voxel this is
    the exact intravoxel dephasing of a piecewise-linear field.
    """
    f = protocol.voxel_mm
    fine_shape = r2star.shape
    crop = tuple(n - n % k for n, k in zip(fine_shape, f, strict=True))
    shape = tuple(n // k for n, k in zip(crop, f, strict=True))
    window = (slice(0, crop[0]), slice(0, crop[1]), slice(0, crop[2]))
    scale = protocol.scale / TISSUES["cerebral_wm"].s0
    bias = smooth_field(rng, 0.12, shape=fine_shape)[window]
    amp0 = (s0[window] * (1.0 + bias) * scale).astype(np.float32)
    # Complex decay rate: -R2* + i 2 pi df (1/s); echoes advance by multiplying per-voxel steps.
    rate = np.empty(amp0.shape, dtype=np.complex64)
    rate.real = -r2star[window] * np.float32(r2star_bias)
    field = shim_field(rng, SHIM_HZ, shape=fine_shape)
    if extra_field_hz is not None:
        field = field + extra_field_hz
    rate.imag = 2 * np.pi * field[window]
    # Dephasing within each 1 mm voxel, where the field gradient is steep enough to matter.
    grads = np.stack(np.gradient(field[window]))  # Hz per mm, (3, ...)
    steep = np.abs(grads).max(axis=0) > 1.0  # Hz/mm; the smooth background stays below
    steep_grads = grads[:, steep]
    sigma = protocol.scale / protocol.snr
    te = np.asarray(protocol.echo_times_s, dtype=np.float64)
    out = np.empty((*shape, te.size), dtype=np.float32)
    phase = np.empty((*shape, te.size), dtype=np.float32) if with_phase else None
    z = amp0 * np.exp(rate * np.float32(te[0]))
    step, step_dt = None, None
    for e in range(te.size):
        if e:
            dt = te[e] - te[e - 1]
            if step is None or not np.isclose(dt, step_dt, rtol=1e-9, atol=0.0):
                step, step_dt = np.exp(rate * np.float32(dt)), dt
            z *= step
        signal = z
        if steep.any():
            signal = z.copy()
            signal[steep] *= np.prod(np.sinc(steep_grads * np.float32(te[e])), axis=0)
        voxel = signal.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(axis=(1, 3, 5))
        noise = rng.standard_normal((2, *shape), dtype=np.float32) * np.float32(sigma)
        out[..., e] = np.hypot(voxel.real + noise[0], voxel.imag + noise[1])
        if phase is not None:
            phase[..., e] = np.arctan2(voxel.imag + noise[1], voxel.real + noise[0])
    if phase is not None:
        return out, float(sigma), phase
    return out, float(sigma)


def t1w_image(
    anatomy: Anatomy, *, rng: np.random.Generator, snr: float = 40.0, scale: float = 1000.0
) -> NDArray[np.float32]:
    """A 1 mm T1-weighted (MPRAGE-like) image of ``anatomy``: tissue contrast, receive bias,
    Rician noise (white matter / noise SD = ``snr``), lesions hypointense.

    Returns
    -------
    numpy.ndarray of float32, shape of ``anatomy.labels``
        In stored units (white matter ~``scale``).
    """
    lut = np.zeros(max(CODE_TISSUE) + 1, dtype=np.float32)
    for code, tissue in CODE_TISSUE.items():
        lut[code] = TISSUES[tissue].t1w
    shape = anatomy.labels.shape
    image = lut[anatomy.labels]
    image[anatomy.lesions] *= 0.65
    image[~anatomy.head] = 0.0
    image *= (1.0 + smooth_field(rng, 0.1, shape=shape)) * np.float32(scale)
    noise = rng.standard_normal((2, *shape), dtype=np.float32) * np.float32(scale / snr)
    return np.hypot(image + noise[0], noise[1])


def rss_magnitude(
    amplitude: NDArray[np.float64], *, sigma: float, coils: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Root-sum-of-squares magnitude of ``coils`` receive channels (noncentral chi, 2N dof).

    Channel ``k`` carries ``amplitude / sqrt(coils) exp(i phi_k)`` with a random phase per voxel
    plus complex Gaussian noise of SD ``sigma`` per real and imaginary part, so the combined
    noise-free magnitude is ``amplitude``; ``coils=1`` gives Rician data.

    Parameters
    ----------
    amplitude : numpy.ndarray, shape (..., n_echoes)
        Noise-free combined magnitude (signal units).
    sigma : float
        Noise SD per channel and per real/imaginary part (signal units).
    coils : int
        Number of channels N.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray, shape (..., n_echoes)
    """
    amplitude = np.asarray(amplitude, dtype=np.float64)
    out = np.zeros(amplitude.shape)
    for _ in range(coils):
        phi = rng.uniform(0.0, 2.0 * np.pi, size=(*amplitude.shape[:-1], 1))
        s = amplitude / np.sqrt(coils)
        out += (s * np.cos(phi) + rng.normal(scale=sigma, size=amplitude.shape)) ** 2
        out += (s * np.sin(phi) + rng.normal(scale=sigma, size=amplitude.shape)) ** 2
    return np.sqrt(out)
