"""Turn the prebuilt OHIF site of ``@ohif/app`` (npm) into the folder Okapi serves under /viewer/.

Usage (the Makefile's ``install`` runs it after ``npm ci``; no Django, standard library only)::

    python frontend/ohif/build.py [--dist node_modules/@ohif/app/dist] [--out site] [--base /viewer/]

What it does to the published ``dist/``:

* leaves out what Okapi never serves: source maps, the onnxruntime-web AI runtime (``ort/``, 136 MiB, only used
  by the optional AI segmentation tools), the microscopy viewer (whole-slide imaging), the service worker and the
  hosting files of OHIF's own deployments, and ``app-config.js`` (Okapi renders it per user);
* moves the site from the origin root, where the published build expects to live (``PUBLIC_URL=/``), to
  ``--base``: the paths in ``index.html``, the webpack public path of every bundle and the font URLs of the CSS;
* gzips the text and WebAssembly files beside the originals (``name.gz``), so that the 17 MB application bundle
  travels as about 3 MB;
* with ``--dicomweb URL``, also writes a static ``app-config.js`` pointing at that DICOMweb root, for hosting the
  site on another origin (CORS, ``OKAPI_CORS_ORIGINS``); that viewer takes the reader's token from its URL
  (``?token=``), which the reading page adds when its viewer is on another origin.

Every rewrite must match: if a new OHIF version changes its build, this script stops with the reason instead of
producing a site whose assets 404.
"""

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP_DIRS = {"ort", "dicom-microscopy-viewer"}
SKIP_FILES = {"app-config.js", "sw.js", "serve.json", "_redirects", "_headers", "google.js"}
COMPRESS = {".js", ".css", ".html", ".json", ".svg", ".wasm", ".txt", ".xml"}
MIN_COMPRESS_BYTES = 1024


class BuildError(RuntimeError):
    pass


def _rewrite(text: str, base: str, name: str) -> tuple[str, int]:
    """The file's text with root-relative site paths moved under ``base``; and how many were moved."""
    count = 0

    def sub(pattern: str, repl, s: str) -> str:
        nonlocal count
        s, n = re.subn(pattern, repl, s)
        count += n
        return s

    if name.endswith(".html"):
        text = sub(r'window\.PUBLIC_URL\s*=\s*"/"', f'window.PUBLIC_URL="{base}"', text)
        text = sub(r'((?:href|src)=")/(?!/)', rf"\g<1>{base}", text)
    elif name.endswith(".js"):
        text = sub(r'__webpack_require__\.p = "/";', f'__webpack_require__.p = "{base}";', text)
        text = sub(r"(['\"])/(dicom-microscopy-viewer/|silent-refresh\.html)", rf"\g<1>{base}\g<2>", text)
    elif name.endswith(".css"):
        text = sub(r"url\(/(?!/)", f"url({base}", text)
    elif name == "manifest.json":
        text = sub(r'"/(?!/)', f'"{base}', text)
    return text, count


def build(dist: Path, out: Path, base: str) -> dict:
    if not (dist / "index.html").is_file():
        raise BuildError(f"{dist} is not the dist/ folder of @ohif/app (no index.html): run npm ci first")
    if not (base.startswith("/") and base.endswith("/")):
        raise BuildError(f"--base must start and end with a slash, not {base!r}")
    version = json.loads((dist.parent / "package.json").read_text()).get("version", "?")
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    rewrites: dict[str, int] = {}
    files, total = 0, 0
    for root, dirs, names in os.walk(dist):
        rel_root = Path(root).relative_to(dist)
        dirs[:] = sorted(d for d in dirs if not (rel_root == Path(".") and d in SKIP_DIRS))
        for name in sorted(names):
            if name.endswith(".map") or (rel_root == Path(".") and name in SKIP_FILES):
                continue
            src, dst = Path(root) / name, work / rel_root / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith((".html", ".js", ".css")) or name == "manifest.json":
                text, n = _rewrite(src.read_text(encoding="utf-8"), base, name)
                text = re.sub(r"\n//# sourceMappingURL=\S+\.map\s*$", "\n", text)  # the maps are left out
                if n:
                    rewrites[str(rel_root / name)] = n
                dst.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(src, dst)
            data = dst.read_bytes()
            files += 1
            total += len(data)
            if dst.suffix in COMPRESS and len(data) >= MIN_COMPRESS_BYTES:
                packed = gzip.compress(data, compresslevel=6, mtime=0)
                if len(packed) < 0.9 * len(data):
                    (dst.parent / (name + ".gz")).write_bytes(packed)
    _check(rewrites)
    index = (work / "index.html").read_bytes()
    info = {"package": "@ohif/app", "version": version, "base": base, "files": files, "bytes": total,
            "index_sha256": hashlib.sha256(index).hexdigest(), "rewrites": rewrites}
    (work / "okapi-viewer.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return info


def static_app_config(dicomweb_root: str, base: str = "/viewer/", login_url: str | None = None) -> str:
    """``app-config.template.js`` rendered without Django for a viewer on another origin: no token inside."""
    origin = dicomweb_root.rstrip("/").rsplit("/dicomweb", 1)[0]
    values = {"dicomweb_root": dicomweb_root.rstrip("/"), "token": None,
              "login_url": login_url or origin + "/accounts/login/", "router_basename": base.rstrip("/") or "/"}
    text = (HERE / "app-config.template.js").read_text()
    text = re.sub(r"\{%\s*(end)?autoescape[^%]*%\}", "", text)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: json.dumps(values[m.group(1)]), text)


def _check(rewrites: dict[str, int]) -> None:
    """Stop when the published build no longer looks like the one these rewrites were written for."""
    if rewrites.get("index.html", 0) < 3:
        raise BuildError("index.html: PUBLIC_URL and its root-relative asset paths were not found")
    if not any(name.startswith("app.bundle.") for name in rewrites):
        raise BuildError("app.bundle.*.js: the webpack public path (__webpack_require__.p = \"/\") was not found")
    if "app.bundle.css" not in rewrites:
        raise BuildError("app.bundle.css: the font URLs (url(/...)) were not found")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=HERE / "node_modules" / "@ohif" / "app" / "dist")
    parser.add_argument("--out", type=Path, default=HERE / "site")
    parser.add_argument("--base", default="/viewer/")
    parser.add_argument("--dicomweb", help="also write a static app-config.js for this DICOMweb root "
                        "(a viewer hosted on another origin), e.g. https://okapi.example.org/dicomweb")
    args = parser.parse_args(argv)
    try:
        info = build(args.dist.resolve(), args.out.resolve(), args.base)
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    if args.dicomweb:
        (args.out / "app-config.js").write_text(static_app_config(args.dicomweb, args.base))
    print(f"OHIF {info['version']} -> {args.out} under {info['base']}: {info['files']} files, "
          f"{info['bytes'] / 2**20:.1f} MiB (+ .gz copies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
