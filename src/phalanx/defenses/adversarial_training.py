"""PGD adversarial training (Madry et al. 2018)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from phalanx._optional import require
from phalanx.core.context import Context
from phalanx.core.plugin import Interval, IsInstance, OneOf, Plugin
from phalanx.errors import InputError, ShapeError
from phalanx.evasion.base import validate_inputs

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)


class AdversarialTraining(Plugin):
    """PGD adversarial training: fit the model on its own worst-case inputs, batch by batch.

    Paper: Madry, Makelov, Schmidt, Tsipras & Vladu (2018), "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR. https://arxiv.org/abs/1706.06083

    Threat model defended against: a white-box attacker who may move each input anywhere in
    the ``eps`` ball of ``norm`` around it (inside the input bounds). Training minimises the
    saddle-point objective ``E[max_{||d|| <= eps} loss(x + d, y)]``: for every batch phalanx's
    own :class:`~phalanx.evasion.pgd.PGD` (with a random start) approximates the inner
    maximisation, and one optimiser step on the adversarial batch the outer minimisation.
    The attack runs with the model in eval mode (the :class:`TorchClassifier` adapter sets it
    and restores the previous flags); the optimiser step runs in train mode.

    Beyond the paper, two common practical additions, both off by default:

    - ``eps_warmup_epochs``: the training radius grows linearly, batch by batch, from
      ``eps / warm-up steps`` to ``eps`` over the first epochs (the step size scales with it).
      Large radii (MNIST at 0.3) otherwise often stall short training runs at chance level.
    - ``clean_fraction``: the loss mixes clean and adversarial cross-entropy,
      ``c * loss(x) + (1 - c) * loss(x_adv)`` (Goodfellow et al. 2015), trading some
      robustness for clean accuracy. ``0`` trains on adversarial batches only, as Madry et al.

    The optimiser is Adam with a one-cycle learning-rate schedule peaking at ``lr``, which
    trains small models well in few epochs.

    Args:
        eps: Training radius. Default 0.3 (Madry et al.'s MNIST setting).
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        step_size: PGD step per iteration. Default 0.01 (MNIST setting); ``2.5 * eps /
            attack_iter`` is a good rule with fewer iterations.
        attack_iter: PGD iterations per batch. Default 40 (MNIST setting); 7 to 10 are usual
            in practice and several times faster.
        random_start: Start PGD from a uniform point of the ball. Default ``True``.
        epochs: Passes over the training data. Default 10.
        lr: Peak learning rate of Adam. Default 1e-3.
        batch_size: Training batch size. Default 128.
        eps_warmup_epochs: Epochs over which the radius ramps up linearly; ``0`` trains at
            ``eps`` from the first batch. Must be less than ``epochs``. Default 0.
        clean_fraction: Weight of the clean loss, in ``[0, 1)``. Default 0.0.
        seed: Seed of the data order, the PGD random starts and any randomness in the
            model's forward pass (dropout). Default 0.
        num_threads: Torch intra-op threads while training (restored afterwards), or
            ``None`` to keep the caller's setting.

    Shapes:
        x: ``(n, *input_shape)`` inside ``bounds``; y: ``(n,)`` class indices.

    Example:
        >>> defense = AdversarialTraining(eps=0.3, step_size=0.075, attack_iter=10, epochs=8)
        >>> history = defense.fit(model, x_train, y_train)  # doctest: +SKIP
        >>> history["adversarial_accuracy"][-1]  # doctest: +SKIP
        0.81
    """

    name = "adv-train"
    paper = "Madry et al. 2018, https://arxiv.org/abs/1706.06083"
    refs: ClassVar[tuple[str, ...]] = (
        "atlas:AML.M0003",
        "nist-aml-2025:NISTAML.022",
        "nist-ai-rmf-1.0:MANAGE-1.3",
    )
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    constraints = {
        "eps": Interval(0, None, closed="neither"),
        "norm": OneOf(norms),
        "step_size": Interval(0, None, closed="neither"),
        "attack_iter": Interval(1, None, integer=True),
        "random_start": IsInstance((bool,)),
        "epochs": Interval(1, None, integer=True),
        "lr": Interval(0, None, closed="neither"),
        "batch_size": Interval(1, None, integer=True),
        "eps_warmup_epochs": Interval(0, None, integer=True),
        "clean_fraction": Interval(0, 1, closed="left"),
        "seed": Interval(0, None, integer=True),
        "num_threads": Interval(1, None, integer=True, optional=True),
    }

    def __init__(
        self,
        *,
        eps: float = 0.3,
        norm: str = "linf",
        step_size: float = 0.01,
        attack_iter: int = 40,
        random_start: bool = True,
        epochs: int = 10,
        lr: float = 1e-3,
        batch_size: int = 128,
        eps_warmup_epochs: int = 0,
        clean_fraction: float = 0.0,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.step_size = step_size
        self.attack_iter = attack_iter
        self.random_start = random_start
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.eps_warmup_epochs = eps_warmup_epochs
        self.clean_fraction = clean_fraction
        self.seed = seed
        self.num_threads = num_threads

    def _extra_problems(self) -> Sequence[str]:
        warmup, epochs = self.eps_warmup_epochs, self.epochs
        valid = all(
            self.constraints[k].problem(k, v) is None
            for k, v in (("eps_warmup_epochs", warmup), ("epochs", epochs))
        )
        if valid and warmup > 0 and warmup >= epochs:
            return [
                f"eps_warmup_epochs ({warmup}) must be less than epochs ({epochs}), so that "
                "training ends at the full eps"
            ]
        return []

    def eps_at(self, step: int, steps_per_epoch: int) -> float:
        """The training radius at batch ``step`` (counted from 0 over the whole run)."""
        ramp = self.eps_warmup_epochs * steps_per_epoch
        if ramp <= 0:
            return float(self.eps)
        return float(self.eps) * min(1.0, (step + 1) / ramp)

    def fit(
        self,
        model: nn.Module,
        x: Any,
        y: Any,
        *,
        context: Context | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> dict[str, Any]:
        """Adversarially train ``model`` in place on ``x``, ``y``.

        The model trains on its own device (moved first to ``context.device`` when that is
        set); data moves there one batch at a time. The caller's global random state and
        thread setting are left as they were. The model is left in eval mode.

        Args:
            model: The network to train; it maps a batch of inputs to logits.
            x: Training inputs, shape ``(n, *input_shape)``, inside ``bounds``.
            y: Integer labels, shape ``(n,)``.
            context: Receives one progress event per batch on task ``defense:adv-train``.
            bounds: Valid input range; adversarial examples are clipped to it.

        Returns:
            The training history, one entry per epoch in each list: ``epoch``, ``eps`` (the
            radius at the epoch's end), ``loss`` (mean training loss), ``clean_accuracy`` and
            ``adversarial_accuracy`` (on the training batches, measured in eval mode just
            before each step, the latter against the PGD examples trained on), ``seconds``;
            and ``total_seconds``. Also kept as ``self.history_``.

        Raises:
            InvalidParameterError: A parameter breaks its constraints (all are listed).
            ShapeError, InputError: The data or model is unusable.
        """
        torch = require("torch", extra="ml", purpose="adversarial training")
        from phalanx.adapters.torch_classifier import TorchClassifier

        self.check_params()
        ctx = context if context is not None else Context()
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"adversarial training needs a torch.nn.Module, got {type(model)}")
        x_in = torch.as_tensor(x, dtype=torch.float32)
        if x_in.ndim < 2 or len(x_in) == 0:
            raise ShapeError(
                f"x must hold at least one sample, shape (n, *input_shape); got {tuple(x_in.shape)}"
            )
        if ctx.device is not None:
            model.to(ctx.device)
        classifier = TorchClassifier(
            model,
            input_shape=tuple(x_in.shape[1:]),
            bounds=(float(bounds[0]), float(bounds[1])),
            batch_size=max(self.batch_size, 256),
        )
        data_x, data_y = validate_inputs(classifier, x_in, y)
        device = classifier.device
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        threads = torch.get_num_threads()
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(self.seed)
            try:
                if self.num_threads is not None:
                    torch.set_num_threads(self.num_threads)
                history = self._train(classifier, data_x, data_y, ctx)
            finally:
                torch.set_num_threads(threads)
                model.eval()
        self.history_ = history
        return history

    def _train(
        self, classifier: Any, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> dict[str, Any]:
        torch = require("torch", extra="ml")
        from phalanx.evasion.pgd import PGD

        cross_entropy = torch.nn.functional.cross_entropy
        model = classifier.model
        device = classifier.device
        n = len(y)
        steps = math.ceil(n / self.batch_size)
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.lr, total_steps=self.epochs * steps
        )
        # The attack gets a silent context: one progress task per batch would drown the caller.
        quiet = Context(seed=self.seed)
        history: dict[str, Any] = {
            "epoch": [],
            "eps": [],
            "loss": [],
            "clean_accuracy": [],
            "adversarial_accuracy": [],
            "seconds": [],
        }
        started = time.perf_counter()
        step = 0
        label = f"Adversarial training ({self.norm} eps={self.eps:g})"
        with ctx.progress(
            f"defense:{self.plugin_id()}", label, total=self.epochs * steps, unit="batches"
        ) as bar:
            for epoch in range(self.epochs):
                epoch_started = time.perf_counter()
                loss_sum, clean_right, adv_right = 0.0, 0, 0
                eps_now = self.eps_at(step, steps)
                order = torch.randperm(n, generator=generator)
                for lo in range(0, n, self.batch_size):
                    index = order[lo : lo + self.batch_size]
                    xb, yb = x[index].to(device), y[index].to(device)
                    eps_now = self.eps_at(step, steps)
                    attack = PGD(
                        eps=eps_now,
                        step_size=self.step_size * eps_now / self.eps,
                        max_iter=self.attack_iter,
                        norm=self.norm,
                        random_start=self.random_start,
                        # A fresh seed per batch: one fixed seed would reuse the same start.
                        seed=int(torch.randint(2**31 - 1, (1,), generator=generator)),
                        batch_size=len(xb),
                    )
                    # The adapter runs the model in eval mode for the attack and restores it.
                    result = attack.run(classifier, xb, yb, context=quiet)
                    x_adv = result.x_adv.detach().to(device)
                    clean_right += int((classifier.predict(xb).to(device) == yb).sum())
                    adv_right += int((result.adv_pred.to(device) == yb).sum())
                    model.train()
                    loss = cross_entropy(_logits(model(x_adv)), yb)
                    if self.clean_fraction > 0:
                        clean_loss = cross_entropy(_logits(model(xb)), yb)
                        loss = self.clean_fraction * clean_loss + (1 - self.clean_fraction) * loss
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    loss_sum += float(loss.detach()) * len(xb)
                    step += 1
                    bar.advance()
                seconds = time.perf_counter() - epoch_started
                history["epoch"].append(epoch + 1)
                history["eps"].append(eps_now)
                history["loss"].append(loss_sum / n)
                history["clean_accuracy"].append(clean_right / n)
                history["adversarial_accuracy"].append(adv_right / n)
                history["seconds"].append(seconds)
                logger.debug(
                    "adv-train epoch %d/%d: eps=%.4g loss=%.4f clean=%.4f adv=%.4f (%.1f s)",
                    epoch + 1,
                    self.epochs,
                    eps_now,
                    loss_sum / n,
                    clean_right / n,
                    adv_right / n,
                    seconds,
                )
        history["total_seconds"] = time.perf_counter() - started
        return history


def _logits(out: Any) -> torch.Tensor:
    """Accept a tensor of logits, or an object with a ``.logits`` tensor (transformers)."""
    logits = getattr(out, "logits", out)
    return logits  # type: ignore[no-any-return]
