# Before any submodule loads: the per-packet modules come compiled (mypyc) when a fresh build exists
# (services/media/native.py), pure Python otherwise.
from services.media import native

native.install()
