"""veRL steps on the CPU, watched by entropymon's veRL trainer: run by tests/test_integration_verl.py
inside the veRL virtualenv (``python tests/verl_child.py OUT_DIR``).

Two runs of two steps each: "steps" with veRL's defaults, "renamed" with a Clip-Cov loss on a
veRL whose ``entropy`` field has another name (the capture must switch itself off).

What is real veRL code here: the ``TrainingWorker`` (FSDP2 engine, veRL's own forward and entropy)
computing old log-probs and entropy of a tiny random Qwen2 built in code; veRL's GRPO advantage;
a TransferQueue on a local Ray holding the step's fields as the v1 trainer keeps them;
``PPOTrainer._compute_old_log_prob`` (veRL's own ``actor/entropy``) and the registered
``entropymon_sync`` trainer's ``_compute_metrics``, which reads TransferQueue and writes the run.
The trainer object is made without ``PPOTrainer.__init__`` (that builds Ray worker groups, a
rollout server and a dataloader, none of which run on a CPU); the attributes ``_compute_metrics``
reads are set from the same config. What it measured goes to OUT_DIR/result.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

os.environ.update(VERL_PLATFORM="cpu", VERL_ENGINE_DEVICE="cuda", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
                  LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", TOKENIZERS_PARALLELISM="false",
                  RAY_DEDUP_LOGS="0")

import torch

OUT = Path(sys.argv[1])
VOCAB = [f"t{i}" for i in range(60)]
PROMPTS, GENERATIONS, PROMPT_LEN, RESPONSE_LEN = 4, 4, 6, 10


def progress(what: str) -> None:
    print(f"verl_child: {what}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register_cpu_platform() -> None:
    """veRL 0.9.1 knows cuda/npu/rocm only: a CPU platform, registered the way a hardware plugin would."""
    from verl.plugin.platform.platform_base import PlatformBase
    from verl.plugin.platform.platform_manager import PlatformRegistry

    class CpuDeviceModule:
        """torch.cpu, plus the memory counters veRL reads from an accelerator's module (0 on a CPU)."""

        def __getattr__(self, name):
            if hasattr(torch.cpu, name):
                return getattr(torch.cpu, name)
            if name == "get_device_name":
                return lambda *args: "CPU"
            if "memory" in name or name.startswith("mem_"):
                return lambda *args, **kwargs: 0 if not name.startswith("mem_") else (0, 0)
            raise AttributeError(name)

    @PlatformRegistry.register(platform="cpu")
    class PlatformCPU(PlatformBase):
        device_name = "cpu"
        vendor_name = "cpu"
        device_module = CpuDeviceModule()

        def is_available(self): return True
        def current_device(self): return "cpu"
        def device_count(self): return 1
        def set_device(self, device_index): pass
        def synchronize(self, device_index=None): pass
        def manual_seed(self, seed): torch.manual_seed(seed)
        def manual_seed_all(self, seed): torch.manual_seed(seed)
        def empty_cache(self): pass
        def communication_backend_name(self): return "gloo"
        def visible_devices_envvar(self): return "CPU_VISIBLE_DEVICES"
        def ray_resource_name(self): return "CPU"
        def ray_noset_envvars(self): return []
        def is_ipc_supported(self): return False
        def set_allocator_settings(self, settings): pass
        def get_device_capability(self, device_index=0): return (None, None)
        def nvtx_range(self, msg): return contextlib.nullcontext()
        def profiler_start(self): pass
        def profiler_stop(self): pass
        def cudart(self): return None


def write_model(path: Path) -> None:
    """A 2-layer Qwen2 of width 32 with random weights and a word-level tokenizer over VOCAB."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", *VOCAB])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)  # the same weights in every run: hf_entropy reloads them from disk
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=False)
    Qwen2ForCausalLM(config).save_pretrained(path)


def compose_config(model_path: Path, loss_mode: str, run: str):
    import verl.trainer.config as config_package
    from hydra import compose, initialize_config_dir

    overrides = [
        f"actor_rollout_ref.model.path={model_path}",
        "+actor_rollout_ref.model.override_config.attn_implementation=eager",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=false",
        "actor_rollout_ref.actor.use_torch_compile=false",
        "actor_rollout_ref.actor.fsdp_config.model_dtype=fp32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={PROMPTS}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={PROMPTS * GENERATIONS}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={PROMPTS * GENERATIONS}",
        f"actor_rollout_ref.rollout.n={GENERATIONS}",
        "actor_rollout_ref.rollout.temperature=1.0",
        "actor_rollout_ref.rollout.calculate_log_probs=false",  # no vLLM log-probs to compare with
        f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode}",
        "algorithm.adv_estimator=grpo",
        "trainer.v1.trainer_mode=entropymon_sync",
        f"+entropymon.run={run}",
        f"+entropymon.logdir={OUT / 'runs'}",
        "+entropymon.token_rows_every=1",
        f"+entropymon.token_rows_per_step={PROMPTS * GENERATIONS}",
    ]
    with initialize_config_dir(config_dir=os.path.dirname(config_package.__file__), version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def build_worker(config):
    """veRL's actor TrainingWorker, configured as ActorRolloutRefWorker.init_model configures it."""
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.engine_workers import TrainingWorker, TrainingWorkerConfig

    actor = config.actor_rollout_ref.actor
    actor_config = omega_conf_to_dataclass(actor)
    actor_config.model_config = omega_conf_to_dataclass(config.actor_rollout_ref.model)
    training = TrainingWorkerConfig(model_type="language_model", model_config=actor_config.model_config,
                                    engine_config=actor_config.engine, optimizer_config=actor_config.optim,
                                    checkpoint_config=actor_config.checkpoint)
    training.engine_config.use_dynamic_bsz = False
    training.engine_config.infer_micro_batch_size_per_gpu = config.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu
    training.engine_config.micro_batch_size_per_gpu = actor.ppo_micro_batch_size_per_gpu
    worker = TrainingWorker(config=training)
    worker.reset()
    return worker


def rollout_batch(seed: int):
    """Left-padded prompts, right-padded responses of random lengths, as a rollout leaves them."""
    generator = torch.Generator().manual_seed(seed)
    n = PROMPTS * GENERATIONS
    prompt_ids = torch.randint(2, 2 + len(VOCAB), (PROMPTS, PROMPT_LEN), generator=generator)
    prompts = prompt_ids.repeat_interleave(GENERATIONS, dim=0)  # (N, P)
    responses = torch.randint(2, 2 + len(VOCAB), (n, RESPONSE_LEN), generator=generator)  # (N, R)
    lengths = torch.randint(3, RESPONSE_LEN + 1, (n,), generator=generator)  # (N,)
    response_mask = (torch.arange(RESPONSE_LEN)[None, :] < lengths[:, None]).long()  # (N, R)
    responses = torch.where(response_mask.bool(), responses, torch.zeros_like(responses))
    prompt_mask = torch.ones_like(prompts)
    prompt_mask[::3, :2] = 0  # some prompts are shorter: left padding
    prompts = torch.where(prompt_mask.bool(), prompts, torch.zeros_like(prompts))
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)  # (N, P+R)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    scores = torch.zeros(n, RESPONSE_LEN)  # a 0/1 reward on the last response token, as veRL's reward loop
    scores[torch.arange(n), lengths - 1] = (responses[:, 0] % 2 == 0).float()
    uids = [f"s{seed}-prompt-{i // GENERATIONS}" for i in range(n)]
    return dict(prompts=prompts, responses=responses, input_ids=torch.cat([prompts, responses], dim=1),
                attention_mask=attention_mask, position_ids=position_ids, response_mask=response_mask,
                rm_scores=scores), uids


def to_nested(padded: torch.Tensor, lengths: torch.Tensor, left: bool = False) -> torch.Tensor:
    rows = [row[-int(k):] if left else row[: int(k)] for row, k in zip(padded, lengths)]
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def hf_entropy(model_path: Path, fields: dict) -> torch.Tensor:
    """(N, R) token entropies from a plain transformers forward of the same weights: the independent reference."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=fields["input_ids"], attention_mask=fields["attention_mask"],
                       position_ids=fields["position_ids"]).logits  # (N, P+R, V)
    logits = logits[:, PROMPT_LEN - 1 : -1].double()  # (N, R, V): the positions that predict the responses
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)  # (N, R)


class LocalActorGroup:
    """Stands for ``actor_rollout_wg``: its compute_log_prob is the TrainingWorker above, via TransferQueue.

    The worker group would read the batch's inputs from TransferQueue, run ``infer_batch`` and
    put ``log_probs`` / ``entropy`` back; here the same worker already ran on the same inputs
    (``step_fields`` holds its output), so the meta is returned as the group returns it.
    """

    def compute_log_prob(self, meta):
        return meta


class OneCpu:
    def get_n_gpus(self):
        return 1


def make_trainer(config):
    """The registered entropymon_sync trainer, set up as PPOTrainer.__init__/_setup would for these calls."""
    from verl.trainer.ppo.utils import need_critic
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer, RolloutMoELoadBalanceMetricsAccumulator

    from entropymon.integrations.verl import VerlCapture

    trainer_cls = get_trainer_cls("entropymon_sync")
    trainer = trainer_cls.__new__(trainer_cls)
    options = trainer._entropymon_prepare(config)
    trainer.config = config
    trainer.use_critic = need_critic(config)
    trainer.actor_rollout_wg = LocalActorGroup()
    trainer.resource_pool_manager = OneCpu()
    trainer._rollout_moe_lb_metrics_accumulator = RolloutMoELoadBalanceMetricsAccumulator(
        model_config=config.actor_rollout_ref.model)
    PPOTrainer._init_tokenizer(trainer)
    trainer.entropymon = VerlCapture.start(config, options, trainer=trainer)
    return trainer


def run_step(trainer, worker, step: int, seed: int) -> dict:
    """One step of the v1 trainer on the CPU: worker forward, TransferQueue, veRL's metrics, our hook."""
    import numpy as np
    import transfer_queue as tq
    from tensordict import NonTensorStack, TensorDict
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding, response_to_nested

    started = time.perf_counter()
    fields, uids = rollout_batch(seed)
    n = len(uids)
    # 1. veRL's compute_log_prob: the real worker's forward (entropy at the rollout temperature)
    td = left_right_2_no_padding(TensorDict(
        {k: fields[k] for k in ("input_ids", "attention_mask", "position_ids", "response_mask")}, batch_size=n))
    tu.assign_non_tensor(td, temperature=float(trainer.config.actor_rollout_ref.rollout.temperature),
                         calculate_entropy=True, compute_loss=False,
                         global_token_num=fields["attention_mask"].sum(dim=1).tolist())
    output = worker.infer_batch(td)
    infer_s = time.perf_counter() - started
    # 2. the step's fields in TransferQueue, nested per sample as the agent loop and workers leave them
    response_mask = fields["response_mask"]
    lengths = response_mask.sum(dim=1)
    nested_mask = to_nested(response_mask, lengths)
    keys = [f"{uid}-{i}" for i, uid in enumerate(uids)]
    tags = [{"min_global_steps": step, "max_global_steps": step} for _ in keys]
    tq.kv_batch_put(keys=keys, partition_id="train", tags=tags, fields=TensorDict({
        "prompts": to_nested(fields["prompts"], fields["attention_mask"][:, :PROMPT_LEN].sum(dim=1), left=True),
        "responses": to_nested(fields["responses"], lengths),
        "response_mask": nested_mask,
        "rm_scores": to_nested(fields["rm_scores"], lengths),
        "log_probs": output["log_probs"],
        "entropy": output["entropy"],
        "num_turns": torch.ones(n, dtype=torch.long),
        "uid": NonTensorStack(*uids),
    }, batch_size=n))
    batch = tq.kv_batch_put(keys=keys, partition_id="train", tags=tags)
    # 3. veRL's own _compute_old_log_prob: old_log_probs/entropy into TransferQueue, actor/entropy
    metrics: dict = {}
    batch = PPOTrainer._compute_old_log_prob(trainer, batch, metrics)
    # 4. veRL's GRPO advantage over the uid groups, written back as _compute_advantage does
    advantages, returns = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=fields["rm_scores"], response_mask=response_mask, index=np.array(uids, dtype=object))
    batch = tq.kv_batch_put(keys=keys, partition_id="train", tags=tags, fields=TensorDict(
        {"advantages": response_to_nested(advantages, nested_mask),
         "returns": response_to_nested(returns, nested_mask)}, batch_size=n))
    # 5. fit()'s step 5: the trainer's _compute_metrics (ours, around veRL's), then the queue is cleared
    timing_raw = {"step": time.perf_counter() - started, "old_log_prob": infer_s}
    trainer._compute_metrics(batch, metrics, timing_raw, global_steps=step, epoch=0)
    tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)
    return {
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        "hf_entropy": hf_entropy(OUT / "model", fields).tolist(),
        "response_mask": response_mask.tolist(),
        "scores": fields["rm_scores"].sum(dim=1).tolist(),
        "uids": uids,
    }


def main() -> None:
    started = time.perf_counter()
    import verl  # noqa: F401 - loads the plugins: entropymon's registers its trainers when v1 is imported

    register_cpu_platform()
    torch.distributed.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{free_port()}")
    os.environ["MASTER_PORT"] = str(free_port())
    write_model(OUT / "model")

    import ray
    import transfer_queue as tq
    from omegaconf import OmegaConf

    worker = build_worker(compose_config(OUT / "model", "vanilla", "steps"))
    progress("worker built")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"total_storage_size": 1000,
                                                            "num_data_storage_units": 1}}}))
    progress("TransferQueue up")
    result = {"timings": {"setup_s": time.perf_counter() - started}}

    # run "steps": two steps with veRL's defaults (vanilla loss, token-mean)
    trainer = make_trainer(compose_config(OUT / "model", "vanilla", "steps"))
    result["steps"] = [run_step(trainer, worker, step, seed=step) for step in (1, 2)]
    trainer.entropymon.close()
    result["steps_run"] = str(trainer.entropymon.monitor.path)
    result["steps_capture_off"] = trainer.entropymon.disabled_reason
    progress("run steps written")

    # run "renamed": a Clip-Cov config, on a veRL whose entropy field has another name
    import entropymon.integrations.verl as integration

    integration.STEP_FIELDS = tuple("entropys" if name == "entropy" else name for name in integration.STEP_FIELDS)
    trainer = make_trainer(compose_config(OUT / "model", "clip_cov", "renamed"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result["renamed"] = [run_step(trainer, worker, step, seed=10 + step) for step in (1, 2)]
    trainer.entropymon.close()
    result["renamed_run"] = str(trainer.entropymon.monitor.path)
    result["renamed_capture_off"] = trainer.entropymon.disabled_reason
    result["renamed_warnings"] = [str(w.message) for w in caught if "entropymon" in str(w.message)]
    result["timings"]["total_s"] = time.perf_counter() - started
    result["plugin_module_loaded"] = "entropymon.integrations.verl_plugin" in sys.modules
    (OUT / "result.json").write_text(json.dumps(result))
    ray.shutdown()


if __name__ == "__main__":
    main()
