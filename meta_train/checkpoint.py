"""Orbax checkpoints of a meta-training run: one pytree of arrays plus JSON metadata.

Damage is found before orbax reads anything: each checkpoint directory holds a manifest
(``FILES``) of the SHA-256 of every file orbax wrote, checked on restore; a truncated, changed
or missing file is reported in one line (orbax and TensorStore, given a damaged file,
fail with pages of specs and leave reads pending that print tracebacks at exit). A SHA-256 of
the arrays themselves, in the metadata, is checked after the restore as well."""

from __future__ import annotations

import errno
import hashlib
import logging
import pathlib
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

# Room for orbax's metadata files beside the arrays: about 50 kB in a checkpoint of the
# shipped recipe's meta-training state (measured), growing with the number of leaves.
_METADATA_BYTES = 64 * 1024


_CHECKSUM = "sha256"  # the metadata key of the arrays' checksum
FILES = "files.sha256"  # the manifest in each checkpoint directory: "<sha256>  <path>" lines


def _file_sums(directory: pathlib.Path) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` but the manifest, by relative path."""
    return {
        str(f.relative_to(directory)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(directory.rglob("*"))
        if f.is_file() and f.name != FILES
    }


def _write_manifest(directory: pathlib.Path) -> None:
    lines = [f"{digest}  {path}\n" for path, digest in _file_sums(directory).items()]
    tmp = directory / f"{FILES}.tmp"
    tmp.write_text("".join(lines))
    tmp.replace(directory / FILES)


def _check_manifest(directory: pathlib.Path) -> None:
    """``ValueError`` naming the first file that differs from the manifest (none: nothing to
    check, as in checkpoints written before manifests)."""
    manifest = directory / FILES
    if not manifest.exists():
        return
    saved = dict(reversed(line.split("  ", 1)) for line in manifest.read_text().splitlines())
    now = _file_sums(directory)
    for path, digest in saved.items():
        if path not in now:
            raise ValueError(f"file {path} is missing")
        if now[path] != digest:
            raise ValueError(f"file {path} changed since it was saved (checksum mismatch)")


def _checksum(state: Any) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes, in tree order."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(state)):
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape}".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()


class CheckpointError(RuntimeError):
    """No checkpoint of a run can be restored."""


def _no_space(step: int, directory: pathlib.Path, why: str) -> OSError:
    return OSError(
        errno.ENOSPC,
        f"no space left on the device to write checkpoint {step} ({why}); the earlier ones "
        "are intact: free space, then --resume",
        str(directory),
    )


class Checkpointer:
    """Keeps the last ``max_to_keep`` checkpoints under ``directory`` (saved atomically by orbax,
    so an interrupted save never replaces a good checkpoint)."""

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep)
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Saves checkpoint ``step``; a full disk raises ``OSError(ENOSPC)`` saying where (the
        earlier checkpoints stay intact).

        The free space is checked first against the state's raw size: a write that orbax
        starts and the disk cannot hold fails in its background threads, which print
        tracebacks of their own while the process exits."""
        needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) + _METADATA_BYTES
        free = shutil.disk_usage(self.directory).free
        if free < needed:
            raise _no_space(step, self.directory, f"{needed} bytes needed, {free} free")
        # orbax logs each failing background thread's traceback before raising; the
        # exception raised here says the same once.
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.CRITICAL)
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    meta=ocp.args.JsonSave({**meta, _CHECKSUM: _checksum(state)}),
                ),
            )
            self._manager.wait_until_finished()
            _write_manifest(self.directory / str(step))
        except (OSError, ValueError) as e:  # tensorstore reports a full disk as ValueError
            if (
                "No space left on device" not in str(e)
                and getattr(e, "errno", None) != errno.ENOSPC
            ):
                raise
            raise _no_space(step, self.directory, "the disk filled while writing") from None
        finally:
            absl.setLevel(level)

    def restore(self, step: int, template: Any) -> tuple[Any, dict[str, Any]]:
        """The state saved at ``step``, shaped like ``template``, and its metadata;
        ``ValueError`` when a file or the arrays are not the bytes saved (their checksums
        differ)."""
        _check_manifest(self.directory / str(step))
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
            ),
        )
        state, meta = restored["state"], dict(restored["meta"])
        saved = meta.pop(_CHECKSUM, None)  # None: saved before checkpoints had one
        if saved is not None and saved != _checksum(state):
            raise ValueError("its arrays changed since they were saved (checksum mismatch)")
        return state, meta

    def restore_newest(self, template: Callable[[int], Any]) -> tuple[int, Any, dict[str, Any]]:
        """``(step, state, meta)`` of the newest checkpoint that restores (``template(step)``
        gives its shapes). Newer ones that do not (a truncated or corrupt file) are moved
        to ``<directory>-damaged/``, each with a warning naming its step and the error;
        nothing is moved when none restores."""
        failed = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state, meta = self.restore(step, template(step))
            except MemoryError:  # not damage: nothing is moved
                raise
            except Exception as e:  # orbax raises many kinds for damaged files
                failed.append((step, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
                continue
            aside = self.directory.with_name(self.directory.name + "-damaged")
            for bad, why in failed:
                aside.mkdir(exist_ok=True)
                target, n = aside / str(bad), 1
                while target.exists():  # the same step damaged before
                    target, n = aside / f"{bad}.{n}", n + 1
                shutil.move(self.directory / str(bad), target)
                warnings.warn(
                    f"checkpoint {bad} cannot be restored ({why}); moved it to {target} "
                    f"and resumed from checkpoint {step}",
                    stacklevel=2,
                )
            self._manager.reload()
            return step, state, meta
        errors = "; ".join(f"step {s}: {why}" for s, why in failed)
        raise CheckpointError(f"no checkpoint under {self.directory} can be restored ({errors})")

    def close(self) -> None:
        self._manager.close()
