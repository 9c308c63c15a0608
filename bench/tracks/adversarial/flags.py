"""Named flags a leaderboard row can carry, each with its one-line explanation.

Flags are data: stored with the job, listed in the JSON ``flags`` field and
explained under the rendered leaderboard.
"""

FLAGS: dict[str, str] = {
    "outside-threat-model": "an adversarial example left the eps-ball of its norm: the job is invalid, not a robustness number",
    "outside-unit-range": "an adversarial example left [0, 1]: the job is invalid, not a robustness number",
    "non-finite-adversarial": "the attack returned NaN or infinite values: the job is invalid",
    "wrong-shape-dtype-or-device": "the attack returned a tensor of another shape, dtype or device: the job is invalid",
    "changed-model-mode": "the attack switched a module between train and eval mode (the harness restored it)",
    "modified-model": "the model's weights or buffers changed in place during the attack: the job is invalid",
    "worst-case-incomplete": "some attacks of this row failed or were invalid: the worst case covers only the others",
    # Carlini et al. 2019, "On Evaluating Adversarial Robustness"; Pintor et al. 2022, "Indicators of Attack Failure"
    "not-monotone-in-eps": "robust accuracy rises as eps grows: some attack is failing, not the model resisting",
    "large-eps-not-zero": "PGD with an eps that allows any image leaves more than 3 % accuracy: the attack is blocked, not the model robust",
    "single-step-beats-iterative": "the first iterative attack misses points FGSM broke (more than a point): gradient masking or a broken attack",
    "black-box-beats-white-box": "a black-box attack broke more than a point that every gradient attack missed: gradient masking",
    "noise-beats-white-box": "random noise of the same budget broke more than a point that the gradient attack missed",
    "transfer-beats-white-box": "PGD on the undefended model, replayed here, broke more than a point every gradient attack missed: gradient masking",
    "not-converged": "twice the iterations breaks more than a point more: raise steps or restarts",
    "randomized": "the model's outputs differ on the same input: use EOT (attack 'eot' with distribution 'none')",
    "masked-gradients": "most input gradients are zero or not finite: use BPDA (attack 'bpda') for non-differentiable parts",
    "loss-not-increasing": "the attack's loss did not rise on most points it failed on: it is not optimizing",
    "silent-success": "the attack found an adversarial point during its iterations but returned a non-adversarial one",
    "outputs-probabilities": "the model returns probabilities, not logits: gradients through a saturated softmax vanish",
    "gradient-masking": "the adaptive attack (BPDA / EOT) breaks more than 5 points the plain attacks missed: the plain numbers overstate robustness",
    "differentiable-claim-false": "the defense declares itself differentiable, but most input gradients through it are zero or not finite",
    "randomness-undeclared": "the defense's outputs are random but it does not declare it, so no EOT attack was added",
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
