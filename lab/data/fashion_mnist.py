"""Fashion-MNIST (Zalando) and MNIST: 60,000 train and 10,000 test 28x28 greyscale images.

Both are read from their four IDX files (``lab.data.idx``): torchvision's layout under
the data root (``download: true`` fills it), or a folder you name, such as the Debian
package ``dataset-fashion-mnist``'s ``/usr/share/datasets/fashion-mnist``.

    lab fit --config experiments/demo.yaml --data=lab.data.FashionMNISTDataModule \
        --data.folder=/usr/share/datasets/fashion-mnist --data.image_size=28
"""

from __future__ import annotations

from torchvision.datasets import MNIST, FashionMNIST

from lab.data.idx import IDXDataModule

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# md5 of each file's decompressed bytes. The published .gz md5s (torchvision's
# ``resources``) differ from the Debian package's, whose archives are re-compressed;
# these are the same for both (measured on dataset-fashion-mnist 0.0~git20200523 and
# recorded by other projects for the published files).
FASHION_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class FashionMNISTDataModule(IDXDataModule):
    """Fashion-MNIST: 10 classes of Zalando product photos (T-shirt/top ... Ankle boot).

    Train: 54,000 (val: 6,000 held out, seeded and stratified, by default); test: the
    official 10,000. See ``IDXDataModule`` for the options.
    """

    dataset_name = "fashion_mnist"
    torchvision_class = FashionMNIST
    classes = FASHION_CLASSES
    md5 = FASHION_MD5
    debian_package = "dataset-fashion-mnist"
    debian_folder = "/usr/share/datasets/fashion-mnist"


class MNISTDataModule(IDXDataModule):
    """MNIST: handwritten digits 0-9, the same layout and options as Fashion-MNIST."""

    dataset_name = "mnist"
    torchvision_class = MNIST
    classes = tuple(str(digit) for digit in range(10))
    md5 = MNIST_MD5
