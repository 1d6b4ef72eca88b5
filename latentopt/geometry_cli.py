"""Console script ``latentopt-geometry``: the metric of a generator's image manifold, for Hessian CMA-ES.

::

    latentopt-geometry compute generator=fourier generator.image_size=64 --codes random --k 50 --out M.npz
    latentopt-geometry compute --codes RUN_DIR --n-codes 20 --k 800 --out fc6_metric.npz
    latentopt optimizer=hessian_cma optimizer.metric=M.npz          # reads the file as it is

``compute`` takes Hydra overrides for the generator (``generator=...``, ``generator.<key>=...``,
``device=...``); with ``--codes RUN_DIR`` and no ``generator=`` it uses that run's generator. It writes
``METRIC.npz`` (``eigvecs`` (d, k), ``eigvals`` (k,), ``provenance`` as JSON text; see
:class:`latentopt.geometry.Metric`) and a spectrum plot ``METRIC.png`` beside it, and refuses to write
over a file that exists.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.checks import ConfigError

CONFIG_MODULE = "latentopt.conf"
COMPOSABLE = ("generator", "device")
"""The config groups and keys a ``compute`` override may set."""


def _fail(message: str) -> None:
    print(f"latentopt-geometry: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentopt-geometry",
                                     description="The Hessian of an image distance with respect to a generator's "
                                                 "code: its top eigenpairs and spectrum (Wang & Ponce, ICLR 2021).")
    commands = parser.add_subparsers(dest="command", required=True)
    compute = commands.add_parser("compute", help="top-k eigenpairs of the metric at one or more codes")
    compute.add_argument("overrides", nargs="*", help="generator=NAME, generator.KEY=VALUE, device=cpu|cuda|auto")
    compute.add_argument("--codes", required=True, help="'random' (the generator's initial codes) or a run folder")
    compute.add_argument("--thread", default="main", help="the run's thread whose codes are used (default main)")
    compute.add_argument("--generation", choices=("last", "all"), default="last",
                         help="a run's codes: its last generation (default) or all generations")
    compute.add_argument("--n-codes", type=int, default=1,
                         help="codes averaged over: random draws, or a run's best-scoring codes (default 1)")
    compute.add_argument("--k", type=int, default=50, help="eigenpairs (default 50)")
    compute.add_argument("--distance", default="mse", help="mse (pixels), perceptual (backbone features, "
                                                           "LPIPS-like) or lpips (needs the lpips package)")
    compute.add_argument("--method", choices=("autograd", "fd"), default="autograd",
                         help="Hessian-vector products by double backprop or finite differences")
    compute.add_argument("--eps", type=float, default=1e-2, help="finite-difference step (--method fd)")
    compute.add_argument("--solver", choices=("lanczos", "block"), default="lanczos",
                         help="scipy's eigsh (ARPACK, default; fastest on a CPU) or block Lanczos on batched "
                              "products (for a GPU)")
    compute.add_argument("--tol", type=float, default=1e-6, help="relative residual of a converged pair")
    compute.add_argument("--trace-probes", type=int, default=32,
                         help="Hutchinson probes for the trace and the variance captured (0: none)")
    compute.add_argument("--seed", type=int, default=0)
    compute.add_argument("--out", type=Path, required=True, help="the .npz to write (a .png goes beside it)")
    return parser


def _compose(overrides: list[str]) -> dict[str, Any]:
    """The composed config's ``generator`` and ``device`` (Hydra overrides; one-line errors)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if "=" not in item or key.split(".", 1)[0] not in COMPOSABLE:
            raise ConfigError(f"{item!r}: compute takes generator=NAME, generator.KEY=VALUE and device=... only")
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, ValueError, KeyError) as err:
        raise ConfigError((str(err).splitlines() or [type(err).__name__])[0]) from None
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    return {"generator": data["generator"], "device": data.get("device", "auto")}


def _run_codes(args: argparse.Namespace) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``--n-codes`` best-scoring codes of a run's thread, and where they came from."""
    from latentopt.experiments.source_run import source_thread

    try:
        record, source = source_thread(args.codes, args.thread)
    except ConfigError as err:
        raise ConfigError(str(err).replace("experiment.source", "--codes").replace("experiment.thread",
                                                                                   "--thread")) from None
    codes, scores = record.codes, record.scores
    if args.generation == "last":
        codes, scores = codes[-1:], scores[-1:]
    codes, scores = codes.reshape(-1, codes.shape[-1]), scores.reshape(-1).astype(np.float64)
    finite = np.isfinite(scores)
    order = np.argsort(-np.where(finite, scores, -np.inf), kind="stable")[: args.n_codes]
    chosen = codes[order].astype(np.float32)
    return chosen, {**source, "selection": f"best {len(order)} by score of the {args.generation} generation(s)"}


def compute(args: argparse.Namespace) -> Path:
    """Build the generator, pick the codes, run the eigensolver, write the metric and its plot."""
    from latentopt.assembly import Assembly
    from latentopt.geometry import average_top_eigenpairs, distance_by_name
    from latentopt.records import RecordError

    out = Path(args.out)
    png = out.with_suffix(".png")
    for path in (out, png):
        if path.exists():
            raise ConfigError(f"--out: {path} exists; give a new file (nothing is written over)")
    if args.n_codes < 1:
        raise ConfigError(f"--n-codes must be >= 1, got {args.n_codes}")
    from_run = args.codes != "random"
    if from_run and not Path(args.codes).is_dir():
        raise ConfigError(f"--codes: {args.codes} is neither 'random' nor a run folder")
    config = _compose(list(args.overrides))
    if from_run and not any(o.split("=", 1)[0].lstrip("+~") == "generator" for o in args.overrides):
        from latentopt.run_record import recorded_config

        try:
            recorded = recorded_config(args.codes, device=str(config["device"]))
        except RecordError as err:
            raise ConfigError(f"--codes: {err}") from None
        threads = (recorded.get("experiment") or {}).get("threads") or {}
        node = (threads.get(args.thread) or {}).get("generator") if isinstance(threads, dict) else None
        config["generator"] = node if isinstance(node, dict) and "name" in node else recorded["generator"]
    assembly = Assembly({"seed": args.seed, **config})
    try:
        generator = assembly.generator(config["generator"])
        if from_run:
            codes, source = _run_codes(args)
            if codes.shape[1] != generator.latent_dim:
                raise ConfigError(f"--codes: {args.codes} holds {codes.shape[1]}-d codes but the generator takes "
                                  f"{generator.latent_dim}; leave out generator= to use the run's generator")
        else:
            codes = generator.initial_codes(args.n_codes, rng=np.random.default_rng([args.seed, 7]))
            source = {"random": f"generator.initial_codes({args.n_codes}, seed {args.seed})"}
        distance = distance_by_name(args.distance, device=generator.device)
        began = time.perf_counter()
        metric = average_top_eigenpairs(generator, codes, args.k, distance, method=args.method, eps=args.eps,
                                        solver=args.solver, tol=args.tol, trace_probes=args.trace_probes,
                                        seed=args.seed)
        seconds = time.perf_counter() - began
    finally:
        assembly.close()
    metric.provenance.update(codes_source=source, generator_config=config["generator"],
                             command="latentopt-geometry compute " + " ".join(sys.argv[2:]))
    out.parent.mkdir(parents=True, exist_ok=True)
    metric.save(out)
    spectrum_plot(metric.eigvals, png, title=_title(metric.provenance))
    captured = metric.provenance.get("variance_captured")
    print(f"{out}: top {len(metric.eigvals)} eigenvalues {metric.eigvals[0]:.4g} .. {metric.eigvals[-1]:.4g} "
          f"({args.distance}, {len(codes)} code(s), {seconds:.1f} s"
          + (f", {100 * captured:.1f} % of the trace" if captured is not None else "") + f"); plot {png}")
    return out


def _title(provenance: dict[str, Any]) -> str:
    generator = provenance.get("generator", {})
    name = generator.get("class", "generator") if isinstance(generator, dict) else "generator"
    weights = generator.get("weights_sha256") if isinstance(generator, dict) else None
    tail = f", weights {str(weights)[:12]}" if weights else ""
    return f"{name}: {provenance.get('distance', '?')} metric, {provenance.get('n_codes', '?')} code(s){tail}"


def spectrum_plot(eigvals: np.ndarray, path: Path, *, title: str) -> None:
    """log10 eigenvalue against rank, and the cumulative share of the top-k sum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(eigvals, dtype=np.float64)
    ranks = np.arange(1, values.size + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    positive = values > 0
    left.semilogy(ranks[positive], values[positive], ".-", ms=3)
    left.set_xlabel("rank")
    left.set_ylabel("eigenvalue")
    left.set_title("spectrum")
    total = values[positive].sum()
    right.plot(ranks, np.cumsum(np.clip(values, 0, None)) / total if total > 0 else ranks * 0.0)
    right.set_xlabel("rank")
    right.set_ylabel("share of the top-k sum")
    right.set_ylim(0, 1.02)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors (exit 2) for anything a user can cause."""
    from latentopt.runtime import maybe_reexec_with_tcmalloc

    if argv is None:
        maybe_reexec_with_tcmalloc()
    args = _parser().parse_args(argv)
    from latentopt.errors import LatentoptError

    try:
        if args.command == "compute":
            compute(args)
    except LatentoptError as err:  # ConfigError, RecordError, a weights error, ...
        _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


if __name__ == "__main__":
    main()
