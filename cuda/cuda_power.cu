/* cuda_power.cu: the board's energy counter, power and SM clock through NVML, for benchmarks
 * (the H100 runs the 4-step DiT chunk at its power cap, so time alone does not compare leases).
 * libnvidia-ml.so.1 ships with the driver; it is opened at run time, so nothing links against
 * it and a machine without it answers LG_ENOTSUP. Runs on the backend's thread. */
#include "cuda_internal.cuh"

#include <dlfcn.h>
#include <string.h>

/* the few NVML declarations used here (nvml.h is not installed with the toolkit everywhere) */
typedef struct lg_nvml_device_st *lg_nvml_device;
typedef int (*nvml_init_fn)(void);
typedef int (*nvml_by_pci_fn)(const char *bus_id, lg_nvml_device *dev);
typedef int (*nvml_energy_fn)(lg_nvml_device dev, unsigned long long *mj);
typedef int (*nvml_power_fn)(lg_nvml_device dev, unsigned *mw);
typedef int (*nvml_clock_fn)(lg_nvml_device dev, int type, unsigned *mhz);
#define LG_NVML_CLOCK_SM 1

static struct {
  int state; /* 0 not tried, 1 ready, -1 unavailable */
  int device;
  lg_nvml_device dev;
  nvml_energy_fn energy;
  nvml_power_fn power;
  nvml_clock_fn clock;
} g_nvml;

static bool nvml_open(int device) {
  if (g_nvml.state != 0 && g_nvml.device == device) return g_nvml.state == 1;
  g_nvml.state = -1, g_nvml.device = device;
  char bus[32];
  void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h || cudaDeviceGetPCIBusId(bus, (int)sizeof bus, device) != cudaSuccess) return false;
  nvml_init_fn init = (nvml_init_fn)dlsym(h, "nvmlInit_v2");
  nvml_by_pci_fn by_pci = (nvml_by_pci_fn)dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
  g_nvml.energy = (nvml_energy_fn)dlsym(h, "nvmlDeviceGetTotalEnergyConsumption");
  g_nvml.power = (nvml_power_fn)dlsym(h, "nvmlDeviceGetPowerUsage");
  g_nvml.clock = (nvml_clock_fn)dlsym(h, "nvmlDeviceGetClockInfo");
  if (!init || !by_pci || !g_nvml.energy || !g_nvml.power || !g_nvml.clock || init() != 0 ||
      by_pci(bus, &g_nvml.dev) != 0)
    return false;
  g_nvml.state = 1;
  return true;
}

int lg_cuda_power_read(lg_backend *be, lg_cuda_power *p) {
  memset(p, 0, sizeof *p);
  if (!nvml_open(lg_cu(be)->device)) return LG_ENOTSUP;
  unsigned long long mj = 0;
  unsigned mw = 0, mhz = 0;
  if (g_nvml.power(g_nvml.dev, &mw) != 0) return LG_ENOTSUP;
  p->power_mw = mw;
  if (g_nvml.energy(g_nvml.dev, &mj) == 0) p->energy_mj = mj;
  if (g_nvml.clock(g_nvml.dev, LG_NVML_CLOCK_SM, &mhz) == 0) p->sm_mhz = mhz;
  return 0;
}
