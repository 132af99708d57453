"""The plain-PyTorch hook: ``Monitor`` (monitor.py), what a training loop calls once per step.

One ``observe`` call, in the order it passes through the modules:
``observation`` (training thread: shape checks, then the one entropy / log-prob pass over the
logits and a snapshot of the small tensors) -> ``stream`` (``StreamWorker``, the background
thread, hands it to the ``StepStream``, which collects a step's micro-batches) -> ``host_batch``
(worker thread: to the CPU, the NaN policy, the step's micro-batches joined) -> ``step_report``
(the metrics of ``entropymon.metrics``, the samples rows and the sampled token rows) -> the
``RunLog``. ``probe`` is the same split for the dH probe (``observe_dh``); ``settings`` checks
the constructor's choices once; ``failures`` counts and warns about every failure, never
raising into the trainer unless ``strict``. Nothing is imported here.
"""
