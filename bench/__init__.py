"""aiorun's benchmarks against crun, runc, podman and docker (issue 7). See README.md."""
