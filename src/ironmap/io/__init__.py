"""Input and output: multi-echo GRE images, echo times, and maps with JSON sidecars."""

from .bids import SessionInputs, find_inputs, parse_entities
from .echoes import (
    MultiEchoImage,
    load_bids_echoes,
    load_image,
    load_multiecho,
    load_volume,
    read_sidecar,
    sidecar_path,
    validate_echo_times,
)
from .maps import (
    atomic_write_bytes,
    check_writable,
    decay_map_paths,
    save_nifti,
    write_decay_maps,
    write_json,
    write_nifti,
    write_tsv,
)

__all__ = [
    "MultiEchoImage",
    "SessionInputs",
    "atomic_write_bytes",
    "check_writable",
    "decay_map_paths",
    "find_inputs",
    "load_bids_echoes",
    "load_image",
    "load_multiecho",
    "load_volume",
    "parse_entities",
    "read_sidecar",
    "save_nifti",
    "sidecar_path",
    "validate_echo_times",
    "write_decay_maps",
    "write_json",
    "write_nifti",
    "write_tsv",
]
