"""FileSystemContext: one save folder (under an optional base) and the files in it."""
from __future__ import annotations

import os
import shutil


class FileSystemContext:
    """A save folder: ``resolve`` file names in it, ``ensureExists`` it, check or ``remove`` what is there."""

    def __init__(self, path: str, base: str = "") -> None:
        self._path = path
        self._base = base

    def getBase(self) -> str:
        return self._base

    @property
    def path(self) -> str:
        """The folder itself (base joined with the save path)."""
        return os.path.join(self._base, self._path) if self._base else self._path

    def resolve(self, name: str = "") -> str:
        """The path of ``name`` inside the folder; leading ``../`` climb out of it, as in the original."""
        base = self.path
        if name.startswith(base + "/"):
            name = name[len(base) + 1 :]
        while name.startswith("../"):
            name = name[3:]
            base = os.path.dirname(base)
        return os.path.join(base, name) if name else base

    def exists(self, name: str = "") -> bool:
        return os.path.exists(self.resolve(name))

    def ensureExists(self, name: str = "", is_file: bool = False) -> str:
        """Create the folder (or, with ``is_file``, the folder of the file ``name``); return the path."""
        path = self.resolve(name)
        os.makedirs(os.path.dirname(path) if is_file else path, exist_ok=True)
        return path

    def remove(self, name: str = "") -> None:
        """Delete ``name`` (a file or a whole folder) if it exists."""
        path = self.resolve(name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)

    def __repr__(self) -> str:
        return f"FileSystemContext({self._path!r}, {self._base!r})"
