import sys, json
for l in open(sys.argv[1]):
    l = l.strip()
    if not l.startswith('{'): continue
    j = json.loads(l)
    print(j.get("device"), "rows", j.get("rows"), "ms", j.get("ms_median"), j.get("ms_min"), "peak", j.get("peak_mem_gib"), "split", j.get("split_ms"))
    for k, v in sorted(j.get("shapes_ms", {}).items(), key=lambda kv: -kv[1][0]):
        print("   %-34s %8.3f ms %4d calls %6.0f TFLOP/s" % (k, v[0], v[1], v[2]))
    print("   ops", j.get("ops_ms"))
