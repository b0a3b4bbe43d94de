"""Versioned model artifacts on disk, with an atomically switched ``active`` pointer.

Layout under ``MODEL_DIR`` (the shop passes ``settings.MODEL_DIR``)::

    MODEL_DIR/
      versions/v0001/             one directory per version, never modified after it appears
        weights.pt                torch.save({name: state_dict}); loaded with weights_only=True
        vocabularies.json         JSON part of the vocabularies (numpy arrays replaced by references)
        vocabularies.npz          the numpy arrays of the vocabularies (allow_pickle=False)
        config.json               model / feature config (plain JSON)
        metrics.json              validation metrics (auc, ndcg@10, ...)
        manifest.json             version, created_at, and size + sha256 of every file above
      active.json                 {"version": "v0003", "history": ["v0001", "v0002"]}
      .tmp-*                      a save in progress (or one killed mid-way); never listed
      .lock                       flock for pointer updates and version numbering

A version is written into a ``.tmp-*`` directory, every file is fsynced, the directory is
fsynced, and only then is it renamed into ``versions/``: a process killed mid-save leaves a
``.tmp-*`` directory that no reader ever looks at, never a half version. The pointer is a small
file replaced with ``os.replace``. A version is fully verified (checksums + a real ``torch.load``)
before it can become active, so a corrupt artifact never replaces the serving model.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

WEIGHTS = "weights.pt"
VOCAB_JSON = "vocabularies.json"
VOCAB_NPZ = "vocabularies.npz"
CONFIG = "config.json"
METRICS = "metrics.json"
MANIFEST = "manifest.json"
REQUIRED_FILES = (WEIGHTS, VOCAB_JSON, VOCAB_NPZ, CONFIG, METRICS)
ACTIVE = "active.json"

GATE_METRICS = ("auc", "ndcg@10")
# accepted spellings of each gate metric (the trainer reports ``valid_auc``)
METRIC_ALIASES = {"auc": ("auc", "valid_auc"), "ndcg@10": ("ndcg@10", "valid_ndcg@10", "ndcg_at_10")}
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_ARRAY_TAG = "__ndarray__"


class ArtifactError(RuntimeError):
    """An artifact that cannot be trusted: missing, truncated or corrupt. ``file`` names the culprit."""

    def __init__(self, message: str, *, version: str | None = None, file: str | None = None):
        self.version = version
        self.file = file
        super().__init__(message)


@dataclass(frozen=True)
class Artifact:
    """A verified, loaded version. ``weights`` maps a name ("model", ...) to a state dict."""

    version: str
    path: Path
    weights: dict[str, dict[str, torch.Tensor]]
    vocabularies: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created_at: str
    metrics: dict[str, Any]
    active: bool


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the champion/challenger gate; ``reasons`` says why, one line per metric."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


def gate(
    candidate_metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    tolerance: float = 0.0,
) -> GateDecision:
    """Pass a candidate unless its AUC or NDCG@10 is worse than the champion's by more than ``tolerance``.

    ``tolerance`` is absolute (0.005 lets AUC drop from 0.800 to 0.795). No champion: the first
    model always passes. A candidate missing a gate metric fails (it cannot show it is not worse).
    """
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    if not champion_metrics:
        return GateDecision(True, ["no champion: the first model passes"])
    passed, reasons = True, []
    for name in GATE_METRICS:
        champ = _metric(champion_metrics, name)
        cand = _metric(candidate_metrics, name)
        if champ is None:
            reasons.append(f"{name}: champion has none, not compared")
            continue
        if cand is None or not np.isfinite(cand):
            passed = False
            reasons.append(f"{name}: candidate has no finite value (champion {champ:.4f})")
            continue
        ok = float(cand) >= float(champ) - tolerance
        passed &= ok
        reasons.append(
            f"{name}: candidate {cand:.4f} vs champion {champ:.4f} (tolerance {tolerance:g}) -> {'ok' if ok else 'worse'}"
        )
    return GateDecision(passed, reasons)


def _metric(metrics: Mapping[str, Any], name: str) -> float | None:
    for key in METRIC_ALIASES.get(name, (name,)):
        if metrics.get(key) is not None:
            return float(metrics[key])
    return None


# ---------------------------------------------------------------------------------------------
# plain helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _split_arrays(obj: Any, arrays: dict[str, np.ndarray], path: str = "v") -> Any:
    """Replace numpy arrays / tensors by ``{"__ndarray__": key}`` so the rest is plain JSON."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"vocabulary entry {path} is an object array; use a list or a typed array")
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {_ARRAY_TAG: key}
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"vocabulary key {k!r} at {path} is not a string")
            out[k] = _split_arrays(v, arrays, f"{path}.{k}")
        return out
    if isinstance(obj, list | tuple):
        return [_split_arrays(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]
    return obj


def _join_arrays(obj: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY_TAG}:
            return arrays[obj[_ARRAY_TAG]]
        return {k: _join_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays) for v in obj]
    return obj


def _version_number(name: str) -> int | None:
    m = _VERSION_RE.match(name)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------


class Registry:
    """Model versions under one ``model_dir``. Safe against crashes; pointer updates are serialised by flock."""

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.root = Path(model_dir)
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)

    # -- writing ---------------------------------------------------------------------------------

    def register(
        self,
        *,
        weights: Mapping[str, Mapping[str, torch.Tensor]] | torch.nn.Module,
        vocabularies: Mapping[str, Any],
        config: Mapping[str, Any],
        metrics: Mapping[str, Any],
    ) -> str:
        """Write a new version atomically and return its id ("v0007"). Does not make it active.

        ``weights`` is ``{name: state_dict}`` (or one module, stored as ``{"model": state_dict}``).
        """
        if isinstance(weights, torch.nn.Module):
            weights = {"model": weights.state_dict()}
        state = {
            str(name): {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in sd.items()}
            for name, sd in weights.items()
        }
        arrays: dict[str, np.ndarray] = {}
        vocab_json = _split_arrays(dict(vocabularies), arrays)
        created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

        tmp = self.root / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            buf = io.BytesIO()
            torch.save(state, buf)
            _write_bytes(tmp / WEIGHTS, buf.getvalue())
            _write_bytes(tmp / VOCAB_JSON, _json_bytes(vocab_json))
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            _write_bytes(tmp / VOCAB_NPZ, buf.getvalue())
            _write_bytes(tmp / CONFIG, _json_bytes(dict(config)))
            _write_bytes(tmp / METRICS, _json_bytes(dict(metrics)))
            files = {
                name: {"sha256": _sha256(tmp / name), "size": (tmp / name).stat().st_size} for name in REQUIRED_FILES
            }
            with self._locked():
                version = self._next_version()
                manifest = {"version": version, "created_at": created_at, "files": files, "format": 1}
                _write_bytes(tmp / MANIFEST, _json_bytes(manifest))
                _fsync_dir(tmp)
                os.rename(tmp, self.versions_dir / version)
                _fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def promote(self, version: str) -> None:
        """Make ``version`` the serving model. It is verified first; a corrupt one raises ArtifactError."""
        self.verify(version)
        with self._locked():
            pointer = self._read_pointer()
            current = pointer.get("version")
            if current == version:
                return
            history = list(pointer.get("history", []))
            if current:
                history.append(current)
            self._write_pointer({"version": version, "history": history[-50:]})

    def rollback(self) -> str:
        """Go back to the previously active version (skipping any that no longer verify); return it."""
        with self._locked():
            history = list(self._read_pointer().get("history", []))
            previous = self._newest_verified(history)
            self._write_pointer({"version": previous, "history": history})
            return previous

    def rollback_target(self) -> str:
        """The version :meth:`rollback` would go back to, without moving the pointer (ArtifactError if none)."""
        return self._newest_verified(list(self._read_pointer().get("history", [])))

    def _newest_verified(self, history: list[str]) -> str:
        """Pop ``history`` down to its newest version that still verifies and return it."""
        while history:
            previous = history.pop()
            try:
                self.verify(previous)
            except ArtifactError:
                continue
            return previous
        raise ArtifactError("nothing to roll back to: no earlier active version that still verifies")

    def promote_if_better(self, version: str, *, tolerance: float = 0.0) -> GateDecision:
        """Champion/challenger: promote ``version`` only if ``gate`` passes against the active model."""
        decision = self.decide(version, tolerance=tolerance)
        if decision.passed:
            self.promote(version)
        return decision

    def decide(self, version: str, *, tolerance: float = 0.0) -> GateDecision:
        """The champion/challenger decision for ``version`` against the active model, without promoting it
        (a caller that records versions elsewhere promotes once its own record is committed)."""
        candidate = self._read_metrics(version)
        champion_version = self.active()
        champion = self._read_metrics(champion_version) if champion_version else None
        held = candidate.get("holdout_gate")
        if isinstance(held, Mapping) and held.get("champion") == champion_version:
            # decided on a fresh holdout through the served pipeline, against this very champion
            decision = GateDecision(bool(held.get("passed")), [str(r) for r in held.get("reasons", [])])
        else:
            decision = gate(candidate, champion, tolerance)
            if isinstance(held, Mapping):
                decision.reasons.insert(
                    0, f"holdout gate was against {held.get('champion')}, not the active {champion_version}: "
                    "validation metrics decide"
                )  # fmt: skip
        return decision

    def gc_incomplete(self, *, older_than_s: float = 3600.0) -> list[str]:
        """Remove ``.tmp-*`` directories left by killed saves (only old ones: a save may be running)."""
        removed = []
        now = time.time()
        for p in self.root.glob(".tmp-*"):
            if now - p.stat().st_mtime >= older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed

    gate = staticmethod(gate)

    # -- reading ---------------------------------------------------------------------------------

    def active(self) -> str | None:
        """The serving version id, or None before the first promotion."""
        return self._read_pointer().get("version")

    def list_versions(self) -> list[VersionInfo]:
        """Complete versions, oldest first (half-written saves are never listed)."""
        active = self.active()
        out = []
        for p in sorted(self.versions_dir.iterdir(), key=lambda p: _version_number(p.name) or -1):
            if _version_number(p.name) is None or not (p / MANIFEST).is_file():
                continue
            try:
                manifest = json.loads((p / MANIFEST).read_text())
                metrics = json.loads((p / METRICS).read_text())
            except (OSError, ValueError):
                manifest, metrics = {}, {}
            out.append(VersionInfo(p.name, manifest.get("created_at", ""), metrics, p.name == active))
        return out

    def verify(self, version: str) -> dict[str, Any]:
        """Check the manifest and every file's size and sha256; return the manifest or raise ArtifactError."""
        path = self.versions_dir / version
        if _version_number(version) is None or not path.is_dir():
            raise ArtifactError(f"model version {version!r} does not exist under {self.versions_dir}", version=version)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            files = manifest["files"]
        except FileNotFoundError:
            raise ArtifactError(f"model {version}: {MANIFEST} is missing", version=version, file=MANIFEST) from None
        except (ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"model {version}: {MANIFEST} is corrupt ({e})", version=version, file=MANIFEST) from e
        for name in REQUIRED_FILES:
            if name not in files:
                raise ArtifactError(f"model {version}: {MANIFEST} does not list {name}", version=version, file=name)
        for name, meta in files.items():
            f = path / name
            if not f.is_file():
                raise ArtifactError(f"model {version}: {name} is missing", version=version, file=name)
            size = f.stat().st_size
            if size != meta.get("size"):
                raise ArtifactError(
                    f"model {version}: {name} is truncated or altered ({size} bytes, manifest says {meta.get('size')})",
                    version=version,
                    file=name,
                )
            digest = _sha256(f)
            if digest != meta.get("sha256"):
                raise ArtifactError(
                    f"model {version}: {name} is corrupt (sha256 {digest[:12]}..., manifest says "
                    f"{str(meta.get('sha256'))[:12]}...)",
                    version=version,
                    file=name,
                )
        return manifest

    def load(self, version: str | None = None) -> Artifact:
        """Verify and load ``version`` (default: the active one). Raises ArtifactError naming the bad file."""
        if version is None:
            version = self.active()
            if version is None:
                raise ArtifactError("no active model version: register and promote one first")
        manifest = self.verify(version)
        path = self.versions_dir / version
        try:
            weights = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ArtifactError(
                f"model {version}: {WEIGHTS} cannot be loaded ({e})", version=version, file=WEIGHTS
            ) from e
        if not isinstance(weights, dict):
            raise ArtifactError(
                f"model {version}: {WEIGHTS} does not hold a dict of state dicts", version=version, file=WEIGHTS
            )
        try:
            with np.load(path / VOCAB_NPZ, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as e:
            raise ArtifactError(
                f"model {version}: {VOCAB_NPZ} cannot be loaded ({e})", version=version, file=VOCAB_NPZ
            ) from e
        parsed = {}
        for name in (VOCAB_JSON, CONFIG, METRICS):
            try:
                parsed[name] = json.loads((path / name).read_text())
            except ValueError as e:
                raise ArtifactError(
                    f"model {version}: {name} is not valid JSON ({e})", version=version, file=name
                ) from e
        try:
            vocabularies = _join_arrays(parsed[VOCAB_JSON], arrays)
        except KeyError as e:
            raise ArtifactError(f"model {version}: {VOCAB_NPZ} lacks array {e}", version=version, file=VOCAB_NPZ) from e
        return Artifact(
            version=version,
            path=path,
            weights=weights,
            vocabularies=vocabularies,
            config=parsed[CONFIG],
            metrics=parsed[METRICS],
            created_at=manifest.get("created_at", ""),
        )

    # -- internals -------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _next_version(self) -> str:
        numbers = [n for p in self.versions_dir.iterdir() if (n := _version_number(p.name)) is not None]
        return f"v{max(numbers, default=0) + 1:04d}"

    def _read_pointer(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / ACTIVE).read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            # os.replace never leaves a half pointer; a garbled one was edited by hand.
            raise ArtifactError(f"{ACTIVE} in {self.root} is corrupt ({e})", file=ACTIVE) from e

    def _write_pointer(self, pointer: Mapping[str, Any]) -> None:
        tmp = self.root / f".{ACTIVE}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        _write_bytes(tmp, _json_bytes(dict(pointer)))
        os.replace(tmp, self.root / ACTIVE)
        _fsync_dir(self.root)

    def _read_metrics(self, version: str) -> dict[str, Any]:
        try:
            return json.loads((self.versions_dir / version / METRICS).read_text())
        except (OSError, ValueError) as e:
            raise ArtifactError(f"model {version}: {METRICS} unreadable ({e})", version=version, file=METRICS) from e


def register(model_dir: str | os.PathLike[str], **kwargs: Any) -> str:
    """Shortcut: ``Registry(model_dir).register(**kwargs)``."""
    return Registry(model_dir).register(**kwargs)


def load(model_dir: str | os.PathLike[str], version: str | None = None) -> Artifact:
    """Shortcut: ``Registry(model_dir).load(version)`` (default: the active version)."""
    return Registry(model_dir).load(version)
