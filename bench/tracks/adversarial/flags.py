"""Named flags a leaderboard row can carry, each with its one-line explanation.

Flags are data: stored with the job, listed in the JSON ``flags`` field and
explained under the rendered leaderboard.
"""

FLAGS: dict[str, str] = {
    "outside-threat-model": "an adversarial example left the eps-ball of its norm: the job is invalid, not a robustness number",
    "outside-unit-range": "an adversarial example left [0, 1]: the job is invalid, not a robustness number",
    "non-finite-adversarial": "the attack returned NaN or infinite values: the job is invalid",
    "non-finite-logits": "the model returned NaN or infinite logits: no prediction of it means anything, the job is invalid",
    "wrong-shape-dtype-or-device": "the attack returned a tensor of another shape, dtype or device: the job is invalid",
    "changed-model-mode": "the attack switched a module between train and eval mode (the harness restored it)",
    "modified-model": "the model's weights or buffers changed in place during the attack: the job is invalid",
    "worst-case-incomplete": "some attacks of this row failed or were invalid: the worst case covers only the others",
    # Carlini et al. 2019, "On Evaluating Adversarial Robustness"; Pintor et al. 2022, "Indicators of Attack Failure"
    "not-monotone-in-eps": "robust accuracy rises as eps grows: some attack is failing, not the model resisting",
    "large-eps-not-zero": "PGD at an eps allowing any image leaves over 3 % accuracy: the attack is blocked, not the model robust (once per model x defense)",
    "single-step-beats-iterative": "the first iterative attack misses points FGSM broke (more than a point): gradient masking or a broken attack",
    "black-box-beats-white-box": "a black-box attack broke more than a point that every gradient attack missed: gradient masking (BPDA is added)",
    "noise-beats-white-box": "noise of the same budget broke more than a point the gradient attack missed (they count as broken; BPDA is added)",
    "transfer-beats-white-box": "PGD on the undefended model, replayed, broke over a point the gradient attacks missed (they count as broken; BPDA is added)",
    "not-converged": "twice the iterations broke more than a point more (on a subsample; those points count as broken): raise steps or restarts",
    "randomized": "the model's outputs differ on the same input: a prediction is the majority of `draws` passes (or the model's PREDICT); EOT is added",
    "masked-gradients": "most input gradients are zero or not finite: gradient attacks alone overstate robustness, so BPDA is added (attack 'bpda')",
    "loss-not-increasing": "the attack's loss did not rise on most points it failed on: it is not optimizing",
    "silent-success": "the attack found an adversarial point during its iterations but returned a non-adversarial one",
    "outputs-probabilities": "the model returns probabilities, not logits: gradients through a saturated softmax vanish",
    "gradient-masking": "the adaptive attack (BPDA / EOT) breaks more than 5 points the plain attacks missed: the plain numbers overstate robustness",
    "differentiable-claim-false": "the defense declares itself differentiable, but most input gradients through it are zero or not finite",
    "randomness-undeclared": "the defense's outputs are random but it does not declare it (the checks detected it and added EOT)",
    "check-outside-threat-model": "a check's adversarial examples left the threat model: they were not counted",
}


def explain(flag: str) -> str:
    return FLAGS.get(flag, "")


# Diagnostics decided against a one-point threshold between two attacks: float noise (another CPU, another
# thread count) can tip them either way, so the CI gate reports a new one of these without failing on it.
# Every other flag (an invalid job, a model that masks gradients, is random or returns probabilities, an
# adaptive attack breaking what plain attacks missed) fails the gate when it newly appears.
ADVISORY: frozenset[str] = frozenset(
    {
        "not-monotone-in-eps",
        "large-eps-not-zero",
        "single-step-beats-iterative",
        "black-box-beats-white-box",
        "noise-beats-white-box",
        "transfer-beats-white-box",
        "not-converged",
        "loss-not-increasing",
        "silent-success",
    }
)
