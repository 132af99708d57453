"""The dH probe on TRL's GRPOTrainer: the batch just trained on, before and after the update.

Why this shape: TRL's loss forward uses a fused LM head that never materialises the logits, and
the logit-space prediction of the entropy change needs the full distribution before and after
the optimizer step. On a probed step (every ``dh_probe_every`` steps) the callback keeps the
captured micro-batches' ids (``TrlCapture`` hands them over) and runs one no-grad forward in
``on_step_end`` (after ``optimizer.step()``) for the logits after. The logits before come almost
for free: a forward hook on the backbone keeps the last hidden states of TRL's own loss forward,
and ``on_pre_optimizer_step`` (after backward, before the update) applies the LM head to them. On
the first probe that shortcut is checked against a full no-grad forward; when they differ (a
model with dropout, a logit soft-cap or scale the plain head does not apply) every probe uses the
full forward instead. A forward is about 15% of a step, so the shortcut halves the probe's cost.

Why it cannot change training: both forwards run under ``torch.no_grad`` with every module in
eval mode (no dropout) and the random number generators forked, and each module's own train/eval
flag is restored afterwards; no gradient, parameter, optimizer state or random state is touched.
The cost is two forwards on one batch every N steps, plus holding that batch's "before" logits
during ``optimizer.step()`` (B x T x V in the model's dtype). Anything unexpected (a model that
does not take these arguments, a multimodal batch) switches the probe off with one warning;
training and the rest of the capture go on.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from transformers import TrainerCallback

# loss-input keys the probe forward needs (TRL 1.16 names)
NEEDED_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages")
PROBE_WARNING = "entropymon: the same-batch dH probe is off"


class TrlDhProbe(TrainerCallback):
    """Runs the before/after forwards of probed steps and feeds ``Monitor.observe_dh``."""

    def __init__(self, trainer, monitor):
        self.trainer = trainer
        self.monitor = monitor
        self.disabled_reason: str | None = None
        self._inputs: dict[int, list[dict]] = {}  # step -> the captured micro-batches' tensors
        self._before: list[torch.Tensor] | None = None  # (B, T, V) per micro-batch
        self._before_step: int | None = None
        self.before_source: str | None = None  # "hidden" (the loss forward's states) or "forward"; None until checked
        self._collecting = False
        self._hidden: list[torch.Tensor] = []  # (b, L, D) per backbone call of the current loss forward
        self._hook = None

    # -- the backbone hook (the loss forward's last hidden states) ---------------------------------

    def install(self) -> None:
        """Hook the backbone so a probed step's loss forward leaves its last hidden states here."""
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        backbone = getattr(model, "base_model", None)
        if isinstance(backbone, torch.nn.Module) and backbone is not model:
            self._hook = backbone.register_forward_hook(self._keep_hidden)
        else:
            self.before_source = "forward"

    def uninstall(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def begin_loss(self, step: int) -> None:
        self._hidden = []
        self._collecting = self.disabled_reason is None and self._hook is not None and self.monitor.probe_due(step)

    def end_loss(self) -> None:
        self._collecting = False

    def _keep_hidden(self, module, args, output) -> None:
        if self._collecting:
            hidden = getattr(output, "last_hidden_state", None)
            if torch.is_tensor(hidden):
                self._hidden.append(hidden.detach())

    # -- fed by TrlCapture for each captured micro-batch -------------------------------------------

    def remember(self, step: int, inputs: dict) -> None:
        if self.disabled_reason is not None or not self.monitor.probe_due(step):
            return
        missing = [key for key in NEEDED_KEYS if not torch.is_tensor(inputs.get(key))]
        if missing:
            self.disable(f"the loss inputs have no {missing}")
            return
        kept = {key: inputs[key].detach() for key in NEEDED_KEYS}
        hidden, self._hidden = self._hidden, []
        n_seq, n_tok = kept["completion_ids"].shape
        if hidden and self.before_source != "forward":
            hidden = torch.cat(hidden) if len(hidden) > 1 else hidden[0]  # (B, P + T, D)
            if hidden.shape[0] == n_seq and hidden.shape[1] == kept["prompt_ids"].shape[1] + n_tok:
                kept["hidden"] = hidden[:, -(n_tok + 1):-1]  # (B, T, D): the states that predict the completion
        if torch.is_tensor(inputs.get("tool_mask")):
            kept["completion_mask"] = kept["completion_mask"] * inputs["tool_mask"].detach()
        for old in [s for s in self._inputs if s < step]:
            del self._inputs[old]
        self._inputs.setdefault(step, []).append(kept)

    def disable(self, reason: str) -> None:
        if self.disabled_reason is not None:
            return
        self.disabled_reason = reason
        self._inputs.clear()
        self._before = None
        self._hidden = []
        self.uninstall()
        warnings.warn(f"{PROBE_WARNING} ({reason}); the other metrics are recorded and training is not affected.",
                      RuntimeWarning, stacklevel=2)

    # -- TrainerCallback ---------------------------------------------------------------------------

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        step = state.global_step + 1  # the number the capture observed this step under
        self._before, self._before_step = None, None
        batches = self._inputs.get(step)
        if self.disabled_reason is not None or not batches:
            return
        try:
            self._before = [self._logits_before(batch) for batch in batches]
            self._before_step = step
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training
            self.disable(f"the forward before the update failed ({type(error).__name__}: {error})")

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        before, batches = self._before, self._inputs.pop(step, None)
        self._before = None
        if self.disabled_reason is not None or before is None or batches is None or self._before_step != step:
            return
        try:
            for batch, logits_before in zip(batches, before):
                logits_after = self._completion_logits(batch)
                self.monitor.observe_dh(step, logits_before=logits_before, logits_after=logits_after,
                                        token_ids=batch["completion_ids"], mask=batch["completion_mask"],
                                        advantages=batch["advantages"])
        except Exception as error:  # noqa: BLE001
            self.disable(f"the forward after the update failed ({type(error).__name__}: {error})")

    # -- the forwards ----------------------------------------------------------------------------------

    def _logits_before(self, batch: dict) -> torch.Tensor:
        """(B, T, V) before the update: the LM head on the loss forward's states, once checked against a forward."""
        hidden = batch.pop("hidden", None)
        if hidden is None or self.before_source == "forward":
            return self._completion_logits(batch)
        from_hidden = self._head_logits(hidden)
        if self.before_source == "hidden":
            return from_hidden
        full = self._completion_logits(batch)
        scale = 1.0 + float(full.detach().abs().max())
        same = from_hidden.shape == full.shape and float((from_hidden - full).abs().max()) <= 1e-4 * scale
        self.before_source = "hidden" if same else "forward"
        if not same:
            self.uninstall()
        return full

    def _head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        head = model.get_output_embeddings()
        with _quiet_forward(model), self.trainer.accelerator.autocast():
            return head(hidden.to(head.weight.device))

    def _completion_logits(self, batch: dict) -> torch.Tensor:
        """(B, T, V) logits predicting the completion tokens, as TRL's loss forward scores them."""
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        completion_ids = batch["completion_ids"]  # (B, T)
        n_tok = completion_ids.shape[1]
        input_ids = torch.cat([batch["prompt_ids"], completion_ids], dim=1)  # (B, P + T)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        with _quiet_forward(model), self.trainer.accelerator.autocast():
            output = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                           logits_to_keep=n_tok + 1)
        logits = output.logits[:, -(n_tok + 1):-1]  # (B, T, V): position t predicts completion token t
        if logits.shape[:2] != completion_ids.shape:
            raise RuntimeError(f"the model returned logits of shape {tuple(output.logits.shape)}")
        return logits


@contextlib.contextmanager
def _quiet_forward(model: torch.nn.Module):
    """No grad, every module in eval mode, random state forked; each module's mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            yield
    finally:
        for module, training in modes:
            module.training = training
