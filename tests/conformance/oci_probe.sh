#!/bin/sh
# What a container sees, printed for tests/conformance/test_oci_differential.py.
echo "== ids"; id; (hostname x) 2>/dev/null && echo sethostname=ok || echo sethostname=refused
echo "pid=$$ host=$(hostname) dom=$(cat /proc/sys/kernel/domainname) cwd=$(pwd) umask=$(umask)"
echo "== status"; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status | tr -s '\t' ' '
echo "== limits"; ulimit -a | sort
echo "== mounts"; awk '{o=$6; s=""; for(i=7;i<=NF;i++) if($i=="-"){t=$(i+1); so=$(i+3)}; print $5, t, o, so}' /proc/self/mountinfo | sort
echo "== dev"; ls -la /dev | awk 'NR>1 && $NF!="." && $NF!=".." {print substr($1,1,10), $5, $6, $NF}' | sort -k4
echo "== cgroup"; echo "cgroups: $(ls /sys/fs/cgroup | sort | tr '\n' ' ')"; for f in memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us cpu/cpu.shares; do echo "$f=$(cat /sys/fs/cgroup/$f 2>&1)"; done
echo "== sysctl shmmax=$(cat /proc/sys/kernel/shmmax) fwd=$(cat /proc/sys/net/ipv4/ip_forward) oom=$(cat /proc/self/oom_score_adj)"
echo "== files"; ls -ln /etc/f /data 2>&1; (touch /data/y /rootfile) 2>&1; rm -f /data/y /rootfile 2>/dev/null
echo "== proc"; for f in /proc/keys /proc/timer_list /proc/acpi /sys/firmware; do echo "$f $(ls $f 2>&1 | wc -l)"; done; (echo 1 > /proc/sys/kernel/shmmax) 2>&1 | head -1; (echo 1 > /proc/sysrq-trigger) 2>&1 | head -1
echo "== net"; ls /sys/class/net | tr '\n' ' '; echo
echo "== env"; env | grep -vE '^(PWD|SHLVL|_)=' | sort
