"""The course's infrastructure: profiles, paths, secrets, Hub access, atomic storage, the first cell, the doctor and the notebook runner."""
