r"""TRL (pip package ``trl``): why there are no adapters here.

TRL 1.16.0 has no function of log-probabilities to call for the losses the issue names:

- the DPO loss types (``sigmoid``, ``hinge``, ``ipo``, ``robust``, ...) are computed inline in
  ``DPOTrainer._compute_loss`` (``trl/trainer/dpo_trainer.py``), after the policy and reference
  forward passes, from trainer attributes (``self.beta``, ``self.loss_types``,
  ``self.label_smoothing``, ``self.f_divergence_type``);
- GRPO's per-token KL (``per_token_kl``) and its loss aggregation (``loss_type``) are inline in
  ``GRPOTrainer._compute_loss`` (``trl/trainer/grpo_trainer.py``).

Calling them needs a trainer, a model and an accelerator, which is not a check of the
mathematics. rlmath's ``preference_loss`` spec states TRL's DPO conventions (the margin not
multiplied by beta, IPO's length-averaged log-probs) for code that reimplements them;
``docs/libraries.md`` lists TRL as "not callable without a trainer".

References:
    TRL, ``trl/trainer/dpo_trainer.py`` and ``trl/trainer/grpo_trainer.py`` (version pinned in
    ``scripts/library_report.py``).
"""

from __future__ import annotations

__all__: list[str] = []
