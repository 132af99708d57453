"""What to try when a rule fires: the setting to change in TRL and veRL, why, and the paper.

Why a catalogue of its own: an alert that says only "entropy collapsed" leaves the user to find
the knob. Each remedy names the setting in TRL's ``GRPOConfig`` (names checked against TRL 1.16
by ``tests/test_analysis_remedies.py``, which reads the installed ``GRPOConfig`` fields) and the
Hydra key in veRL (0.9: ``actor_rollout_ref.*``, ``algorithm.*``), says in one sentence why it
acts on the failure, and cites the paper that measured it. ``None`` for a framework means it has
no such setting; the ``why`` says what to do instead.

Rules map to remedies in ``RULE_REMEDIES``; ``remedies_for(rule)`` returns plain dicts so alerts
stay JSON-friendly. ``at_temperature(remedies, temperature)`` fits the temperature remedy to the
run's recorded sampling temperature (a value 0.1 above it; ``diagnose`` does it for every alert);
without one it stays generic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Remedy:
    action: str  # what to do, in a few words
    trl: str | None  # TRL GRPOConfig setting(s), e.g. "epsilon_high=0.28"
    verl: str | None  # veRL Hydra override(s)
    why: str
    paper: str

    def to_dict(self) -> dict:
        return asdict(self)


_TEMPERATURE_WHY = ("rollouts from a flatter distribution explore more completions per prompt; entropy is "
                    "measured at the sampling temperature, so compare runs at the same one")
_TEMPERATURE_PAPER = "Skywork-OR1 (He et al. 2025, arXiv 2505.22312) on rollout temperature and entropy"
TEMPERATURE_STEP = 0.1  # how far above the run's temperature the remedy suggests sampling

REMEDIES: dict[str, Remedy] = {
    "clip_higher": Remedy(
        "raise the upper clip bound (clip-higher)",
        "epsilon_high=0.28", "actor_rollout_ref.actor.clip_ratio_high=0.28",
        "the symmetric PPO clip caps how far low-probability tokens can rise, so only already-likely "
        "tokens gain mass; a higher upper bound lets rare tokens grow and keeps entropy up",
        "DAPO (Yu et al. 2025, arXiv 2503.14476)"),
    "clip_cov": Remedy(
        "Clip-Cov / KL-Cov on the high-covariance tokens",
        None, "actor_rollout_ref.actor.policy_loss.loss_mode=clip_cov (or kl_cov)",
        "a tiny share of tokens with large Cov(log pi, A) drives the entropy drop; detaching their "
        "gradient (Clip-Cov) or penalising their KL (KL-Cov) kept entropy ~10x higher. TRL has no such "
        "loss: use clip-higher or the entropy bonus there",
        "Cui et al. 2025, The Entropy Mechanism of RL for Reasoning LMs (arXiv 2505.22617)"),
    "entropy_bonus": Remedy(
        "add an (adaptive) entropy bonus",
        "entropy_coef=0.001, or use_adaptive_entropy=True with entropy_target",
        "actor_rollout_ref.actor.entropy_coeff=0.001",
        "a small bonus resists the fall; the adaptive form only switches on when entropy is below a "
        "target, so it does not blow entropy up (a fixed large coefficient can)",
        "Skywork-OR1 (He et al. 2025, arXiv 2505.22312); Cui et al. 2025 on its sensitivity"),
    "forking_tokens": Remedy(
        "train only on the high-entropy forking tokens",
        "top_entropy_quantile=0.2", None,
        "the top 20% of tokens by entropy carry the reasoning forks; restricting the policy gradient "
        "to them kept entropy and improved accuracy on Qwen3",
        "Wang et al. 2025, Beyond the 80/20 Rule (arXiv 2506.01939)"),
    "temperature": Remedy(
        "sample at a higher temperature",
        "temperature (0.1-0.2 above the current one)",
        "actor_rollout_ref.rollout.temperature (0.1-0.2 above the current one)",
        _TEMPERATURE_WHY, _TEMPERATURE_PAPER),
    "lower_lr": Remedy(
        "lower the learning rate (and keep gradient clipping)",
        "learning_rate (halve it, say), max_grad_norm=1.0",
        "actor_rollout_ref.actor.optim.lr (halve it, say), actor_rollout_ref.actor.grad_clip=1.0",
        "entropy changes by about -lr x Cov(log pi, A) per step; a smaller step slows collapse and "
        "stops the large updates that make a policy diverge",
        "Cui et al. 2025 (arXiv 2505.22617), Eq. for dH under natural policy gradient"),
    "kl_anchor": Remedy(
        "anchor to the reference model with a KL penalty",
        "beta=0.04", "actor_rollout_ref.actor.use_kl_loss=True actor_rollout_ref.actor.kl_loss_coef=0.001",
        "a KL term to the reference policy stops the policy from running away from it (divergence); "
        "note it also pulls towards the reference's modes",
        "Ouyang et al. 2022 (InstructGPT); Chen et al. 2025 on KL and mode collapse (arXiv 2510.20817)"),
    "restart_checkpoint": Remedy(
        "stop, and restart from the last checkpoint before the step it began",
        "save_steps / resume_from_checkpoint", "trainer.save_freq / trainer.resume_mode=resume_path",
        "once reward has collapsed and entropy surged the policy rarely recovers; later steps waste "
        "compute",
        "observed on the public TRL Qwen2.5-7B GSM8K run (entropy 0.15 -> 7.3, reward 1.0 -> 0)"),
    "more_generations": Remedy(
        "more generations per prompt",
        "num_generations=16", "actor_rollout_ref.rollout.n=16",
        "with more samples per prompt fewer groups are all-correct or all-wrong, so more of the "
        "batch carries a GRPO advantage; pass@k also has more room",
        "Shao et al. 2024, DeepSeekMath (GRPO, arXiv 2402.03300)"),
    "dynamic_sampling": Remedy(
        "drop zero-variance groups and resample (dynamic sampling)",
        None, "algorithm.filter_groups.enable=True algorithm.filter_groups.metric=acc",
        "groups whose rewards all agree have zero advantage and give no gradient; filtering them "
        "keeps every batch informative. TRL has no built-in filter: change the prompt mix instead",
        "DAPO (Yu et al. 2025, arXiv 2503.14476)"),
    "harder_prompts": Remedy(
        "move to harder prompts (curriculum)",
        "train_dataset (filter out prompts solved in every generation)", "data.train_files",
        "all-correct groups mean the task is too easy for the policy: they teach nothing",
        "DAPO (arXiv 2503.14476); Skywork-OR1 (arXiv 2505.22312) on filtering solved prompts"),
    "easier_prompts": Remedy(
        "move to easier prompts or warm-start further",
        "train_dataset", "data.train_files",
        "all-wrong groups mean the task is too hard: no completion earns a reward to learn from",
        "DeepSeek-R1 (arXiv 2501.12948) on cold-start SFT before RL"),
    "fewer_ppo_epochs": Remedy(
        "reuse each batch for fewer updates",
        "num_iterations=1, steps_per_generation", "actor_rollout_ref.actor.ppo_epochs=1",
        "importance weights degrade as the policy moves away from the one that sampled the batch; "
        "fewer updates per batch keep it on-policy",
        "Schulman et al. 2017 (PPO); VCPO 2026 on ESS collapse"),
    "stop_or_change": Remedy(
        "stop early or change the recipe",
        "max_steps", "trainer.total_training_steps",
        "once entropy is spent and performance is flat, further steps buy little; Cui et al. found "
        "most of the gain comes with the first part of the entropy drop",
        "Cui et al. 2025 (arXiv 2505.22617)"),
}

RULE_REMEDIES: dict[str, tuple[str, ...]] = {
    "entropy_collapse": ("clip_higher", "clip_cov", "entropy_bonus", "forking_tokens", "temperature"),
    "entropy_floor_forecast": ("clip_higher", "entropy_bonus", "clip_cov"),
    "divergence": ("restart_checkpoint", "lower_lr", "kl_anchor", "entropy_bonus"),
    "divergence_surge": ("lower_lr", "entropy_bonus", "kl_anchor"),
    "plateau": ("clip_higher", "clip_cov", "temperature", "stop_or_change"),
    "saturated": ("harder_prompts", "dynamic_sampling", "stop_or_change"),
    "zero_variance_waste": ("dynamic_sampling", "more_generations"),
    "zero_variance_waste_easy": ("harder_prompts", "dynamic_sampling", "more_generations"),
    "zero_variance_waste_hard": ("easier_prompts", "more_generations", "temperature"),
    "pass_at_k_converging": ("temperature", "clip_higher", "more_generations", "clip_cov"),
    "ess_low": ("fewer_ppo_epochs", "lower_lr"),
    "low_headroom": ("stop_or_change", "clip_higher"),
}


def temperature_remedy(temperature: float | None) -> Remedy:
    """The temperature remedy for a run sampled at ``temperature``: a value ``TEMPERATURE_STEP`` above
    it (1.3 -> 1.4), so the advice never names the temperature the run already uses; the generic
    one when the temperature is unknown (None, not a positive number)."""
    try:
        current = float(temperature)
    except (TypeError, ValueError):
        return REMEDIES["temperature"]
    if not 0 < current < float("inf"):  # NaN fails both comparisons
        return REMEDIES["temperature"]
    higher = _temperature_text(current + TEMPERATURE_STEP)
    return Remedy(f"raise the sampling temperature above the current {_temperature_text(current)}",
                  f"temperature={higher}", f"actor_rollout_ref.rollout.temperature={higher}",
                  _TEMPERATURE_WHY, _TEMPERATURE_PAPER)


def _temperature_text(value: float) -> str:
    """1.0 -> '1.0', 1.3 -> '1.3', 0.75 -> '0.75' (a temperature reads as a decimal, never '1')."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def remedies_for(key: str) -> list[dict]:
    """The remedies (as dicts) for a rule or one of its variants; [] when none are listed."""
    return [REMEDIES[name].to_dict() for name in RULE_REMEDIES.get(key, ())]


def at_temperature(remedies, temperature: float | None) -> list[dict]:
    """``remedies`` (dicts, as an alert holds them) with the generic temperature remedy replaced by
    the one for the run's ``temperature``; unchanged when the temperature is unknown."""
    generic = REMEDIES["temperature"].to_dict()
    fitted = temperature_remedy(temperature).to_dict()
    return [fitted if dict(r) == generic else dict(r) for r in remedies]
