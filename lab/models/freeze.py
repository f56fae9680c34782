"""Which parts of a backbone train: named policies for transfer learning.

A policy sets ``requires_grad`` on every parameter of a backbone. The head (the new
classifier, and an embedding layer if the backbone has one) trains under every policy but
``classifier``: it starts from random weights. The policies, as in the STL-10 and CIFAR-10
transfer studies:

- ``all``: everything trains (fine-tuning);
- ``head``: only the head (a linear probe on frozen features, or an MLP head);
- ``layer1`` .. ``layer4``: that residual stage and the head;
- ``conv``: every convolution and the head; ``bn``: every BatchNorm and the head;
- ``downsample``: the 1x1 projection shortcuts (``*.downsample.*``) and the head;
- ``classifier``: only the classifier ``fc``; unlike ``head``, an embedding layer is
  frozen too (a linear probe on a learned embedding, such as a contrastive encoder's);
- ``frozen_children=k`` (with ``all``): the first ``k`` top-level children of
  torchvision's ResNet (``conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4,
  avgpool, fc``) are frozen, the rest train, as the CIFAR-10 study's loop over
  ``model.named_children()`` did.

A BatchNorm layer whose parameters are all frozen is *frozen*: :func:`freeze_batchnorm`
puts it in eval mode so its running statistics stay those of the pretrained model
(Lightning's ``BaseFinetuning`` would keep it in train mode, normalising with batch
statistics); the task calls it after every ``train()``.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lab.errors import LabError

POLICIES = (
    "all",
    "head",
    "layer1",
    "layer2",
    "layer3",
    "layer4",
    "conv",
    "bn",
    "downsample",
    "classifier",
)
"""The allowed values of ``trainable``."""

TORCHVISION_CHILDREN = (
    "conv1",
    "bn1",
    "relu",
    "maxpool",
    "layer1",
    "layer2",
    "layer3",
    "layer4",
    "avgpool",
    "fc",
)
"""The top-level children of a torchvision ResNet, in order (``frozen_children`` counts
these; ``relu``, ``maxpool`` and ``avgpool`` have no parameters)."""

HEAD = ("embedding", "fc")
"""Top-level modules that make up the head: new layers, always trained."""


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _trains(name: str, module: nn.Module, policy: str) -> bool:
    """Whether the parameter ``name`` (of ``module``, its owner) trains under ``policy``."""
    if policy == "classifier":
        return _top(name) == "fc"
    if policy == "all" or _top(name) in HEAD:
        return True
    if policy == "head":
        return False
    if policy.startswith("layer"):
        return _top(name) == policy
    if policy == "conv":
        return isinstance(module, nn.Conv2d)
    if policy == "bn":
        return isinstance(module, _BatchNorm)
    if policy == "downsample":
        return ".downsample." in f".{name}"
    raise AssertionError(policy)


def _owned_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, nn.Parameter]]:
    """``(full name, owning module, parameter)`` for every parameter of ``model``."""
    for module_name, module in model.named_modules():
        for parameter_name, parameter in module.named_parameters(recurse=False):
            full = f"{module_name}.{parameter_name}" if module_name else parameter_name
            yield full, module, parameter


def apply_trainable_policy(
    backbone: nn.Module, trainable: str = "all", frozen_children: int = 0
) -> None:
    """Set ``requires_grad`` of every parameter of ``backbone`` by a named policy.

    Args:
        backbone: a backbone with torchvision ResNet module names (``lab.models.ResNet``);
            ``all``, ``head``, ``classifier``, ``conv`` and ``bn`` work for any backbone
            whose classifier is named ``fc`` (and embedding layer, if any, ``embedding``).
        trainable: one of :data:`POLICIES`.
        frozen_children: with ``trainable="all"``, freeze the first this many of
            :data:`TORCHVISION_CHILDREN` (0 to 9: the head always trains).
    """
    if trainable not in POLICIES:
        raise LabError(f"model.trainable={trainable!r}: expected one of {', '.join(POLICIES)}")
    limit = len(TORCHVISION_CHILDREN) - 1
    if not 0 <= frozen_children <= limit:
        raise LabError(
            f"model.frozen_children={frozen_children}: expected 0 to {limit} (the first k of "
            f"{', '.join(TORCHVISION_CHILDREN)}; the new head {TORCHVISION_CHILDREN[-1]} "
            "always trains)"
        )
    if frozen_children and trainable != "all":
        raise LabError(
            f"model.frozen_children={frozen_children} goes with model.trainable=all, got "
            f"{trainable!r}: use one or the other"
        )
    tops = {name for name, _ in backbone.named_children()}
    if trainable.startswith("layer") and trainable not in tops:
        raise LabError(
            f"model.trainable={trainable!r} but the backbone has no {trainable} "
            f"(its children: {', '.join(sorted(tops))})"
        )
    frozen_tops = set(TORCHVISION_CHILDREN[:frozen_children])
    with_weights = frozen_tops - {"relu", "maxpool", "avgpool"}
    if with_weights - tops:
        raise LabError(
            f"model.frozen_children={frozen_children} names torchvision ResNet children "
            f"({', '.join(sorted(with_weights - tops))}) this backbone does not have: use "
            "model.trainable instead"
        )
    for name, module, parameter in _owned_parameters(backbone):
        trains = _trains(name, module, trainable) and _top(name) not in frozen_tops
        parameter.requires_grad_(trains)


def frozen_batchnorms(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that have parameters, none of them trainable."""
    found = []
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            parameters = list(module.parameters(recurse=False))
            if parameters and not any(p.requires_grad for p in parameters):
                found.append(module)
    return found


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every frozen BatchNorm layer in eval mode; returns how many there are."""
    layers = frozen_batchnorms(model)
    for layer in layers:
        layer.eval()
    return len(layers)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"trainable": n, "total": m}``: numbers of scalar parameters."""
    total = trainable = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return {"trainable": trainable, "total": total}


def main(argv: list[str] | None = None) -> None:
    """Print how many parameters each policy trains: ``python -m lab.models.freeze``."""
    import argparse

    from lab.models.resnet import ResNet

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--depth", type=int, default=50, choices=(18, 34, 50))
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--head_hidden", type=int, nargs="*", default=[])
    args = parser.parse_args(argv)
    settings = [(policy, 0) for policy in POLICIES] + [("all", 5), ("all", 9)]
    print(f"| ResNet-{args.depth}, head {args.head_hidden or 'linear'} | trainable | share |")
    print("|---|---:|---:|")
    for policy, k in settings:
        model = ResNet(depth=args.depth, num_classes=args.num_classes, head_hidden=args.head_hidden)
        apply_trainable_policy(model, policy, k)
        counts = count_parameters(model)
        name = f"frozen_children={k}" if k else policy
        share = counts["trainable"] / counts["total"]
        print(f"| {name} | {counts['trainable']:,} | {share:.1%} |")


if __name__ == "__main__":
    main()
