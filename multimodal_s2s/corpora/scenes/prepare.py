"""Build the scene corpus: images plus ``train/dev/test.jsonl`` manifests, cached.

Usage: ``python -m multimodal_s2s.corpora.scenes.prepare OUT_DIR [--seed 0] [--jobs 2] ...``

A manifest line is ``{"image": absolute path, "caption": text, "width": pixels, "height":
pixels, "objects": [names in caption order], "relation": "left" | "above" | null,
"background": background id, "id": scene id}``.
Re-running with the same settings and inputs returns at once; any change rebuilds.

``--composition varied`` draws every split in the varied composition (:mod:`.varied`: wider
sizes, aspect, rotation, occlusion, edges, shadows, lighting, blur, noise and JPEG quality,
over the photos of more Debian packages and more texture kinds; its rows add
``composition``, the scene's random choices); the default ``classic`` draws the corpus as
it always has (the same files, byte for byte). ``--composition mixed`` draws the training
scenes before ``num_train // 2`` as the classic corpus of the same settings does and the
rest as the varied one does (each scene planned and drawn as there, byte for byte), and dev
and test as the classic corpus: every planned scene drawn once, half of them each way, the
mix whose model named the most independently composited objects
(``recipes/scenes_captioning/experiments.md``, "Issue 40, item 2"). A folder holds one
composition: building another into it is refused.

``--num-independent-dev N --num-independent-test M`` also write the independently
composited splits ``independent_dev.jsonl`` and ``independent_test.jsonl``
(:mod:`.independent`: other backgrounds, sizes, placement, edges, shadows and lighting, on
the object pairs of dev and test), cached on their own, so the corpus above is unchanged;
and ``dev_mixed.jsonl``, dev's lines then independent_dev's, a dev set for choosing
checkpoints that holds scenes composited both ways.
"""

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import random
import shutil
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from multimodal_s2s.atomic_file import atomic_write
from multimodal_s2s.corpora.scenes import varied
from multimodal_s2s.corpora.scenes.backgrounds import (
    DEFAULT_BACKGROUND_ROOT,
    PACKAGE_BACKGROUNDS,
    TEXTURE_KINDS,
    VARIED_TEXTURE_KINDS,
    find_package_photos,
    find_photos,
    texture_ids,
)
from multimodal_s2s.corpora.scenes.independent import prepare_independent
from multimodal_s2s.corpora.scenes.plan import SPLITS, SceneSpec, plan_scenes, split_backgrounds
from multimodal_s2s.corpora.scenes.render import RenderedScene, SceneRenderer
from multimodal_s2s.corpora.scenes.stamps import DEFAULT_STAMP_ROOT, find_objects
from multimodal_s2s.corpora.scenes.varied import VariedRenderer
from multimodal_s2s.data.manifest import write_manifest
from multimodal_s2s.data.scene_captions import format_caption
from multimodal_s2s.errors import InputError

CORPUS_VERSION = 3  # 3: a tenth of the training scenes hold one object (plan.SINGLE_FRACTION)
IMAGE_FORMATS = {"jpg": ("JPEG", {"quality": 95, "subsampling": 0}), "png": ("PNG", {})}
COMPOSITIONS = ("classic", "varied", "mixed")
# Generated textures by default: as many per kind in both compositions (varied has more kinds).
DEFAULT_TEXTURES = {"classic": 60, "varied": 12 * len(VARIED_TEXTURE_KINDS)}
# The compositions a mixed corpus draws its training scenes from, in index order.
MIXED_PARTS = ("classic", "varied")
MIXED_DEV = "dev_mixed.jsonl"
_BATCH_SIZE = 50
_MARKER = "corpus.json"


class _Job(NamedTuple):
    """What every rendering process needs to know."""

    image_size: int
    seed: int
    photos: dict[str, Path]
    image_dir: Path
    image_format: str


# Set in each rendering process by _start_worker: the _Job and its CompositionRenderer.
_worker_state: dict = {}


def prepare_corpus(
    out_dir: Path,
    seed: int = 0,
    image_size: int = 128,
    num_train: int = 20000,
    num_dev: int = 1000,
    num_test: int = 1000,
    jobs: int = 2,
    *,
    stamp_root: Path = DEFAULT_STAMP_ROOT,
    background_root: Path = DEFAULT_BACKGROUND_ROOT,
    num_textures: int | None = None,
    image_format: str = "jpg",
    composition: str = "classic",
    background_packages: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Build (or find cached) the corpus under ``out_dir``; returns ``{split: manifest path}``.

    Images go to ``out_dir/images/<split>/<id>.<image_format>`` (square, side ``image_size``).
    The output depends only on the arguments other than ``jobs`` and ``progress``, and on
    the stamp and background files (for ``composition="varied"`` or ``"mixed"``, also those
    of the Debian packages of ``background_packages``, by default
    ``backgrounds.PACKAGE_BACKGROUNDS``). ``num_textures``: by default
    ``DEFAULT_TEXTURES[composition]``; a mixed corpus plans each part with that part's
    (``num_textures`` or its default), as that part's own corpus does.
    """
    if composition not in COMPOSITIONS:
        raise InputError(f"composition must be one of {COMPOSITIONS}, got {composition!r}")
    minimums = {
        "image_size": (image_size, 8),
        "num_train": (num_train, 1),
        "num_dev": (num_dev, 0),
        "num_test": (num_test, 0),
        "jobs": (jobs, 1),
        "num_textures": (0 if num_textures is None else num_textures, 0),
    }
    _check_arguments(minimums, image_format)
    out_dir = out_dir.resolve()
    objects = find_objects(stamp_root)
    photos = find_photos(background_root)
    if background_packages is None:
        background_packages = PACKAGE_BACKGROUNDS
    if composition != "classic":
        photos |= find_package_photos(background_packages)
    settings = {
        "version": CORPUS_VERSION,
        "seed": seed,
        "image_size": image_size,
        "counts": {"train": num_train, "dev": num_dev, "test": num_test},
        "num_textures": _texture_counts(composition, num_textures),
        "image_format": image_format,
        "inputs": _fingerprint(objects, photos),
    }
    if composition != "classic":  # a classic corpus' settings stay as they always were
        settings["composition"] = composition
        settings["composition_parameters"] = varied.parameters()
        settings["packages"] = sorted(background_packages)
    if composition == "mixed":  # the first training scene drawn varied
        settings["varied_from"] = num_train // 2
    manifests = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    _check_composition(out_dir / _MARKER, composition)
    if _is_cached(out_dir / _MARKER, settings, manifests):
        return manifests
    (out_dir / _MARKER).unlink(missing_ok=True)
    plan = plan_corpus(objects, photos, settings)
    job = _Job(image_size, seed, photos, out_dir / "images", image_format)
    rows = _render_all(plan, job, jobs, progress)
    for split in SPLITS:
        write_manifest(rows[split], manifests[split])
    with atomic_write(out_dir / _MARKER) as marker:
        marker.write(json.dumps({"settings": settings}, indent=1) + "\n")
    return manifests


def plan_corpus(
    objects: dict[str, list[Path]], photos: dict[str, Path], settings: dict
) -> dict[str, list[SceneSpec]]:
    """The scenes of every split of the corpus that ``settings`` (as ``prepare_corpus``
    records them in the corpus folder) describes; the same plan each time.

    ``photos``: the photo backgrounds the corpus was built from (MATE's, and for a varied
    or mixed corpus the packages' too). A mixed corpus' scenes are those of its parts'
    plans: training scenes before ``varied_from`` and dev and test of the classic plan
    (without the packages' photos, as a classic corpus), the other training scenes of the
    varied plan.
    """
    composition = settings.get("composition", "classic")
    if composition != "mixed":
        return _plan_composition(objects, photos, settings, composition)
    classic_photos = {bid: path for bid, path in photos.items() if not bid.startswith("package/")}
    parts = {
        part: _plan_composition(
            objects,
            classic_photos if part == "classic" else photos,
            {**settings, "num_textures": settings["num_textures"][part]},
            part,
        )
        for part in MIXED_PARTS
    }
    start = settings["varied_from"]
    return {
        "train": parts["classic"]["train"][:start] + parts["varied"]["train"][start:],
        "dev": parts["classic"]["dev"],
        "test": parts["classic"]["test"],
    }


class CompositionRenderer:
    """Draws each planned scene in its own composition (``SceneSpec.composition``): classic
    with :class:`.render.SceneRenderer`, varied with :class:`.varied.VariedRenderer`, each
    made on first use (a classic corpus may have smaller images than the varied composition
    draws)."""

    def __init__(self, image_size: int, seed: int, photo_files: dict[str, Path]) -> None:
        self.image_size = image_size
        self.seed = seed
        self.photo_files = photo_files
        self._renderers: dict[str, SceneRenderer | VariedRenderer] = {}

    def render(self, spec: SceneSpec) -> RenderedScene:
        """The scene as its composition draws it (``composition`` set for a varied one)."""
        if spec.composition not in self._renderers:
            kind = VariedRenderer if spec.composition == "varied" else SceneRenderer
            self._renderers[spec.composition] = kind(self.image_size, self.seed, self.photo_files)
        return self._renderers[spec.composition].render(spec)


def write_mixed_dev(out_dir: Path, manifests: dict[str, Path]) -> Path | None:
    """Write ``out_dir/dev_mixed.jsonl``: the lines of ``manifests["dev"]`` then those of
    ``manifests["independent_dev"]``; None (and nothing written) without both."""
    if "dev" not in manifests or "independent_dev" not in manifests:
        return None
    path = out_dir.resolve() / MIXED_DEV
    lines = [
        line
        for split in ("dev", "independent_dev")
        for line in manifests[split].read_text().splitlines()
        if line.strip()
    ]
    with atomic_write(path) as file:
        file.write("".join(line + "\n" for line in lines))
    return path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-train", type=int, default=20000)
    parser.add_argument("--num-dev", type=int, default=1000)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--stamp-root", type=Path, default=DEFAULT_STAMP_ROOT)
    parser.add_argument("--background-root", type=Path, default=DEFAULT_BACKGROUND_ROOT)
    parser.add_argument(
        "--num-textures",
        type=int,
        help="generated texture backgrounds (default: 60 classic, 156 varied; mixed: each "
        "part its own)",
    )
    parser.add_argument("--image-format", choices=sorted(IMAGE_FORMATS), default="jpg")
    parser.add_argument(
        "--composition",
        choices=COMPOSITIONS,
        default="classic",
        help="how scenes are drawn: classic (as always), varied (varied.py), or mixed "
        "(training scenes half classic, half varied; dev and test classic)",
    )
    parser.add_argument("--num-independent-dev", type=int, default=0)
    parser.add_argument("--num-independent-test", type=int, default=0)
    parser.add_argument(
        "--independent-background-root",
        type=Path,
        help="images for the independent splits (default: the Debian packages of "
        "independent.BACKGROUND_PACKAGES)",
    )
    args = vars(parser.parse_args(argv))
    independent = {
        "independent_dev": args.pop("num_independent_dev"),
        "independent_test": args.pop("num_independent_test"),
    }
    independent_root = args.pop("independent_background_root")
    out_dir = args.pop("out_dir")
    try:
        manifests = prepare_corpus(out_dir, **args, progress=True)
        manifests |= prepare_independent(
            out_dir,
            manifests,
            independent,
            args["seed"],
            args["image_size"],
            stamp_root=args["stamp_root"],
            background_root=independent_root,
            progress=True,
        )
        mixed = write_mixed_dev(out_dir, manifests)
        if mixed is not None:
            manifests["dev_mixed"] = mixed
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
    for split, path in manifests.items():
        print(f"{split}: {path}")


def _check_arguments(minimums: dict[str, tuple[int, int]], image_format: str) -> None:
    """``minimums`` maps an argument name to its value and its smallest allowed value."""
    for name, (value, minimum) in minimums.items():
        if value < minimum:
            raise InputError(f"{name} must be at least {minimum}, got {value}")
    if image_format not in IMAGE_FORMATS:
        raise InputError(f"image_format must be one of {sorted(IMAGE_FORMATS)}: {image_format!r}")


def _check_composition(marker: Path, composition: str) -> None:
    """Refuse to build one composition into a folder that holds another."""
    if not marker.is_file():
        return
    try:
        found = json.loads(marker.read_text())["settings"].get("composition", "classic")
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    if found != composition:
        raise InputError(
            f"{marker.parent} holds a {found} corpus; draw the {composition} one into "
            "another folder"
        )


def _texture_counts(composition: str, num_textures: int | None) -> int | dict[str, int]:
    """The settings' ``num_textures``: the count given, else the composition's default; for
    a mixed corpus, that of each part (``MIXED_PARTS``)."""
    if composition == "mixed":
        return {part: _texture_counts(part, num_textures) for part in MIXED_PARTS}
    return DEFAULT_TEXTURES[composition] if num_textures is None else num_textures


def _plan_composition(
    objects: dict[str, list[Path]], photos: dict[str, Path], settings: dict, composition: str
) -> dict[str, list[SceneSpec]]:
    """The plan of a corpus of one composition, classic or varied (their texture kinds)."""
    rng = random.Random(f"{settings['seed']}/backgrounds")
    kinds = VARIED_TEXTURE_KINDS if composition == "varied" else TEXTURE_KINDS
    pools = split_backgrounds(list(photos), texture_ids(settings["num_textures"], kinds), rng)
    return plan_scenes(objects, pools, settings["counts"], settings["seed"], composition)


def _fingerprint(objects: dict[str, list[Path]], photos: dict[str, Path]) -> str:
    """A digest of the input files (names, paths and sizes) the corpus is built from."""
    listing = [
        [name, [[str(p), p.stat().st_size] for p in paths]] for name, paths in objects.items()
    ]
    listing += [[bid, [[str(p), p.stat().st_size]]] for bid, p in photos.items()]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _is_cached(marker: Path, settings: dict, manifests: dict[str, Path]) -> bool:
    if not marker.is_file() or not all(path.is_file() for path in manifests.values()):
        return False
    try:
        return json.loads(marker.read_text())["settings"] == settings
    except (ValueError, KeyError, TypeError):
        return False


def _render_all(
    plan: dict[str, list[SceneSpec]], job: _Job, jobs: int, progress: bool
) -> dict[str, list[dict]]:
    """Render every planned scene into a fresh image folder, in ``jobs`` processes.

    Returns the manifest rows of each split, in plan order.
    """
    shutil.rmtree(job.image_dir, ignore_errors=True)
    for split in SPLITS:
        (job.image_dir / split).mkdir(parents=True)
    batches = [
        (split, specs[start : start + _BATCH_SIZE])
        for split, specs in plan.items()
        for start in range(0, len(specs), _BATCH_SIZE)
    ]
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    with contextlib.ExitStack() as stack:
        if jobs == 1:
            _start_worker(job)
            stack.callback(_worker_state.clear)
            results = map(_render_batch, batches)
        else:
            pool = stack.enter_context(multiprocessing.Pool(jobs, _start_worker, (job,)))
            results = pool.imap(_render_batch, batches)
        total = sum(len(specs) for specs in plan.values())
        bar = stack.enter_context(tqdm(total=total, unit="scene", disable=not progress))
        for (split, specs), batch_rows in zip(batches, results, strict=True):
            rows[split].extend(batch_rows)
            bar.update(len(specs))
    return rows


def _start_worker(job: _Job) -> None:
    _worker_state["job"] = job
    _worker_state["renderer"] = CompositionRenderer(job.image_size, job.seed, job.photos)


def _render_batch(batch: tuple[str, list[SceneSpec]]) -> list[dict]:
    """Render and save one batch of scenes of a split; their manifest rows."""
    split, specs = batch
    job: _Job = _worker_state["job"]
    renderer: CompositionRenderer = _worker_state["renderer"]
    pil_format, options = IMAGE_FORMATS[job.image_format]
    rows = []
    for spec in specs:
        scene = renderer.render(spec)
        path = job.image_dir / split / f"{spec.id}.{job.image_format}"
        scene.image.save(path, pil_format, **options)
        row = {
            "image": str(path),
            "caption": format_caption(scene.caption),
            "width": scene.image.width,
            "height": scene.image.height,
            "objects": scene.caption.objects,
            "relation": scene.caption.relation,
            "background": spec.background,
            "id": spec.id,
        }
        if scene.composition is not None:
            row["composition"] = scene.composition
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
