"""Input and output: multi-echo GRE images, echo times, maps with JSON sidecars, the layout of
ironmap's derivatives (:mod:`.derivatives`), the dictionary of its table columns
(:mod:`.columns`), the lock a stage holds on it (:mod:`.lock`), and multi-echo phase in radians
(:mod:`.phase`, the one place phase is read)."""

from .bids import SessionInputs, find_inputs, parse_entities
from .dataset import check_output_dir, write_bidsignore, write_dataset_description
from .derivatives import (
    DATASET_DESCRIPTION,
    GROUP_DIR,
    REPORT,
    ParticipantOutputs,
    find_participant_tables,
    group_path,
    read_tsv,
    write_tsv,
)
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
from .lock import output_lock
from .maps import (
    atomic_write_bytes,
    check_writable,
    decay_map_paths,
    save_nifti,
    write_decay_maps,
    write_error,
    write_json,
    write_nifti,
)
from .phase import PhaseImage, load_phase

__all__ = [
    "DATASET_DESCRIPTION",
    "GROUP_DIR",
    "REPORT",
    "MultiEchoImage",
    "ParticipantOutputs",
    "PhaseImage",
    "SessionInputs",
    "atomic_write_bytes",
    "check_output_dir",
    "check_writable",
    "decay_map_paths",
    "find_inputs",
    "find_participant_tables",
    "group_path",
    "load_bids_echoes",
    "load_image",
    "load_multiecho",
    "load_phase",
    "load_volume",
    "output_lock",
    "parse_entities",
    "read_sidecar",
    "read_tsv",
    "save_nifti",
    "sidecar_path",
    "validate_echo_times",
    "write_bidsignore",
    "write_dataset_description",
    "write_decay_maps",
    "write_error",
    "write_json",
    "write_nifti",
    "write_tsv",
]
