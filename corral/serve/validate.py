"""A job's `validating_files` state: the training (and validation) file read with corral's
own readers, so a bad row fails the job with the same `file:line` message the CLI prints
(the stored path shown as the file's id)."""
from __future__ import annotations

from corral.core.errors import CorralError

READERS = {"sft": "load_sft_records", "dpo": "load_preference_records"}


def validate_job(state, row: dict | None) -> dict | None:
    """None when the job's files read cleanly, else the job's error object."""
    from corral.data import readers

    if row is None:
        return None
    spec = row["spec"]
    read = getattr(readers, READERS[spec["method"]])
    for param in ("training_file", "validation_file"):
        file_id = spec.get(param)
        if not file_id:
            continue
        path = state.root / "files" / f"{file_id}.jsonl"
        if state.store.file(file_id) is None or not path.is_file():
            return {"code": "invalid_file", "param": param,
                    "message": f"{param} {file_id} was deleted before the job started; "
                               "upload it again and create a new job"}
        try:
            read(str(path))
        except CorralError as exc:
            return {"code": "invalid_training_file" if param == "training_file" else
                    "invalid_validation_file", "param": param,
                    "message": str(exc).replace(str(path), file_id)}
    return None
