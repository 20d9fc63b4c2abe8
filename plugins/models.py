"""Built-in models."""
from harness import hookimpl


def resnet18_cifar10(num_classes: int):
    """torchvision ResNet18, randomly initialised (the paper's and the NeurIPS 2023 starting kit's model)."""
    from torchvision.models import resnet18  # imported on use: discovery (`unlearn plugins`) stays fast

    return resnet18(weights=None, num_classes=num_classes)


@hookimpl
def register_models(register):
    register("resnet18", resnet18_cifar10)
