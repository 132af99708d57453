"""entropymon on real trainers: ``trl.attach`` (TRL GRPOTrainer, per-token capture) and
``hf.EntropymonCallback`` (any Hugging Face Trainer, logged scalars only).

Nothing is imported here, so ``import entropymon`` never pulls in transformers or TRL.
"""
