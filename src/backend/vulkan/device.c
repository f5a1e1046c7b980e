/*
 * The Vulkan backend: instance, probe, open/close and the vtable.
 *
 * probe makes one VkInstance, lists every physical device of Vulkan 1.1 or
 * later that has a compute queue, and destroys the instance again; an entry's
 * handle is (physical device index, hash of the device UUID). open makes its
 * own instance, finds the device again by index and UUID, and keeps both for
 * the life of the sm_device, so every create has its destroy in close.
 *
 * SEQMIX_VK_VALIDATION=1 enables VK_LAYER_KHRONOS_validation and routes every
 * warning and error it reports through sm_log as "vulkan validation: ..."
 * (the tests fail on those). "sync" also enables synchronization validation,
 * "gpu" GPU-assisted validation.
 */
#include "backend/vulkan/vulkan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char validation_layer[] = "VK_LAYER_KHRONOS_validation";

/* ---- Errors ---------------------------------------------------------------- */

const char *sm_vk_result_name(VkResult r) {
  switch (r) {
#define NAME(x)                                                                                    \
  case x: return #x;
    NAME(VK_SUCCESS)
    NAME(VK_NOT_READY)
    NAME(VK_TIMEOUT)
    NAME(VK_EVENT_SET)
    NAME(VK_EVENT_RESET)
    NAME(VK_INCOMPLETE)
    NAME(VK_ERROR_OUT_OF_HOST_MEMORY)
    NAME(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    NAME(VK_ERROR_INITIALIZATION_FAILED)
    NAME(VK_ERROR_DEVICE_LOST)
    NAME(VK_ERROR_MEMORY_MAP_FAILED)
    NAME(VK_ERROR_LAYER_NOT_PRESENT)
    NAME(VK_ERROR_EXTENSION_NOT_PRESENT)
    NAME(VK_ERROR_FEATURE_NOT_PRESENT)
    NAME(VK_ERROR_INCOMPATIBLE_DRIVER)
    NAME(VK_ERROR_TOO_MANY_OBJECTS)
    NAME(VK_ERROR_FORMAT_NOT_SUPPORTED)
    NAME(VK_ERROR_FRAGMENTED_POOL)
    NAME(VK_ERROR_UNKNOWN)
    NAME(VK_ERROR_OUT_OF_POOL_MEMORY)
    NAME(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    NAME(VK_ERROR_FRAGMENTATION)
    NAME(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    NAME(VK_PIPELINE_COMPILE_REQUIRED)
    NAME(VK_ERROR_VALIDATION_FAILED_EXT)
#undef NAME
  default: return "VK_RESULT_UNKNOWN";
  }
}

seqmix_status sm_vk_fail(const char *call, VkResult r) {
  seqmix_status status = SEQMIX_ERROR_BACKEND;
  if (r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
    status = SEQMIX_ERROR_OUT_OF_MEMORY;
  else if (r == VK_ERROR_DEVICE_LOST)
    status = SEQMIX_ERROR_DEVICE_LOST;
  const char *name = sm_vk_result_name(r);
  if (!strcmp(name, "VK_RESULT_UNKNOWN")) return sm_fail(status, "%s: VkResult %d", call, (int)r);
  return sm_fail(status, "%s: %s", call, name);
}

/* ---- Instance ----------------------------------------------------------------- */

static VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
  (void)severity, (void)types, (void)user;
  const char *message = data && data->pMessage ? data->pMessage : "(no message)";
  sm_log(SEQMIX_LOG_ERROR, "vulkan validation: %s", message);
  return VK_FALSE;
}

typedef enum validation_mode {
  VALIDATION_OFF,
  VALIDATION_ON,
  VALIDATION_SYNC,
  VALIDATION_GPU
} validation_mode;

static validation_mode requested_validation(void) {
  const char *env = getenv("SEQMIX_VK_VALIDATION");
  if (!env || !*env || !strcmp(env, "0")) return VALIDATION_OFF;
  if (!strcmp(env, "sync")) return VALIDATION_SYNC;
  if (!strcmp(env, "gpu")) return VALIDATION_GPU;
  return VALIDATION_ON;
}

static bool has_extension(const VkExtensionProperties *list, uint32_t count, const char *name) {
  for (uint32_t i = 0; i < count; ++i)
    if (!strcmp(list[i].extensionName, name)) return true;
  return false;
}

/* Instance extensions offered by the loader and implicit layers, plus those of
 * `layer` when given. *out is malloc'ed. */
static seqmix_status instance_extensions(const char *layer, VkExtensionProperties **out,
                                         uint32_t *count) {
  uint32_t base = 0, extra = 0;
  *out = NULL;
  *count = 0;
  VkResult r = vkEnumerateInstanceExtensionProperties(NULL, &base, NULL);
  if (r != VK_SUCCESS) return sm_vk_fail("vkEnumerateInstanceExtensionProperties", r);
  if (layer && vkEnumerateInstanceExtensionProperties(layer, &extra, NULL) != VK_SUCCESS) extra = 0;
  VkExtensionProperties *list = calloc((size_t)base + extra + 1, sizeof *list);
  if (!list) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  r = vkEnumerateInstanceExtensionProperties(NULL, &base, list);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
    free(list);
    return sm_vk_fail("vkEnumerateInstanceExtensionProperties", r);
  }
  if (extra && vkEnumerateInstanceExtensionProperties(layer, &extra, list + base) < 0) extra = 0;
  *out = list;
  *count = base + extra;
  return SEQMIX_OK;
}

static bool layer_available(const char *name) {
  uint32_t count = 0;
  if (vkEnumerateInstanceLayerProperties(&count, NULL) != VK_SUCCESS || count == 0) return false;
  VkLayerProperties *layers = calloc(count, sizeof *layers);
  if (!layers) return false;
  bool found = false;
  if (vkEnumerateInstanceLayerProperties(&count, layers) >= 0)
    for (uint32_t i = 0; i < count; ++i)
      if (!strcmp(layers[i].layerName, name)) found = true;
  free(layers);
  return found;
}

/* An instance (and, when validating, its debug messenger). *no_driver is set
 * when the failure means "no usable Vulkan here" rather than an error. */
static seqmix_status create_instance(VkInstance *instance, VkDebugUtilsMessengerEXT *messenger,
                                     bool *no_driver) {
  *instance = VK_NULL_HANDLE;
  *messenger = VK_NULL_HANDLE;
  *no_driver = false;

  uint32_t version = VK_API_VERSION_1_0;
  PFN_vkEnumerateInstanceVersion enumerate_version =
      (PFN_vkEnumerateInstanceVersion)vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
  if (enumerate_version && enumerate_version(&version) != VK_SUCCESS) version = VK_API_VERSION_1_0;
  if (version < VK_API_VERSION_1_1) {
    *no_driver = true;
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED,
                   "vulkan backend: the loader offers Vulkan %u.%u; 1.1 is needed",
                   VK_API_VERSION_MAJOR(version), VK_API_VERSION_MINOR(version));
  }
  if (version > VK_API_VERSION_1_3) version = VK_API_VERSION_1_3;

  validation_mode validation = requested_validation();
  if (validation != VALIDATION_OFF && !layer_available(validation_layer)) {
    sm_log(SEQMIX_LOG_ERROR, "vulkan validation: layer %s not available", validation_layer);
    validation = VALIDATION_OFF;
  }
  VkExtensionProperties *available = NULL;
  uint32_t available_count = 0;
  seqmix_status st =
      instance_extensions(validation ? validation_layer : NULL, &available, &available_count);
  if (st) {
    *no_driver = true;
    return st;
  }
  const char *extensions[4];
  uint32_t extension_count = 0;
  VkInstanceCreateFlags flags = 0;
  if (has_extension(available, available_count, VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
    extensions[extension_count++] = VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME;
    flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
  }
  bool debug_utils = false, features = false;
  if (validation) {
    debug_utils = has_extension(available, available_count, VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    if (debug_utils)
      extensions[extension_count++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    else
      sm_log(SEQMIX_LOG_ERROR, "vulkan validation: %s not available; messages cannot be caught",
             VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    features = validation != VALIDATION_ON &&
               has_extension(available, available_count, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
    if (features) extensions[extension_count++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
  }
  free(available);

  VkDebugUtilsMessengerCreateInfoEXT messenger_info = {
      .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
      .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
      .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
      .pfnUserCallback = on_debug_message,
  };
  VkValidationFeatureEnableEXT enables[] = {
      validation == VALIDATION_GPU ? VK_VALIDATION_FEATURE_ENABLE_GPU_ASSISTED_EXT
                                   : VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
  VkValidationFeaturesEXT validation_features = {
      .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
      .pNext = debug_utils ? &messenger_info : NULL,
      .enabledValidationFeatureCount = 1,
      .pEnabledValidationFeatures = enables,
  };
  VkApplicationInfo app = {
      .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
      .pApplicationName = "seqmix",
      .applicationVersion =
          VK_MAKE_VERSION(SEQMIX_VERSION_MAJOR, SEQMIX_VERSION_MINOR, SEQMIX_VERSION_PATCH),
      .pEngineName = "seqmix",
      .engineVersion =
          VK_MAKE_VERSION(SEQMIX_VERSION_MAJOR, SEQMIX_VERSION_MINOR, SEQMIX_VERSION_PATCH),
      .apiVersion = version,
  };
  const char *layers[] = {validation_layer};
  VkInstanceCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
      .pNext = features      ? (const void *)&validation_features
               : debug_utils ? (const void *)&messenger_info
                             : NULL,
      .flags = flags,
      .pApplicationInfo = &app,
      .enabledLayerCount = validation ? 1 : 0,
      .ppEnabledLayerNames = layers,
      .enabledExtensionCount = extension_count,
      .ppEnabledExtensionNames = extensions,
  };
  VkResult r = vkCreateInstance(&info, NULL, instance);
  if (r != VK_SUCCESS) {
    *instance = VK_NULL_HANDLE;
    *no_driver = r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED;
    return sm_vk_fail("vkCreateInstance", r);
  }
  if (debug_utils) {
    PFN_vkCreateDebugUtilsMessengerEXT create_messenger =
        (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(*instance,
                                                                  "vkCreateDebugUtilsMessengerEXT");
    r = create_messenger ? create_messenger(*instance, &messenger_info, NULL, messenger)
                         : VK_ERROR_EXTENSION_NOT_PRESENT;
    if (r != VK_SUCCESS) {
      *messenger = VK_NULL_HANDLE;
      vkDestroyInstance(*instance, NULL);
      *instance = VK_NULL_HANDLE;
      return sm_vk_fail("vkCreateDebugUtilsMessengerEXT", r);
    }
  }
  return SEQMIX_OK;
}

static void destroy_instance(VkInstance instance, VkDebugUtilsMessengerEXT messenger) {
  if (!instance) return;
  if (messenger) {
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger =
        (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
            instance, "vkDestroyDebugUtilsMessengerEXT");
    if (destroy_messenger) destroy_messenger(instance, messenger, NULL);
  }
  vkDestroyInstance(instance, NULL);
}

static seqmix_status physical_devices(VkInstance instance, VkPhysicalDevice **out,
                                      uint32_t *count) {
  *out = NULL;
  *count = 0;
  uint32_t n = 0;
  VkResult r = vkEnumeratePhysicalDevices(instance, &n, NULL);
  if (r != VK_SUCCESS) return sm_vk_fail("vkEnumeratePhysicalDevices", r);
  if (n == 0) return SEQMIX_OK;
  VkPhysicalDevice *list = calloc(n, sizeof *list);
  if (!list) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  r = vkEnumeratePhysicalDevices(instance, &n, list);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
    free(list);
    return sm_vk_fail("vkEnumeratePhysicalDevices", r);
  }
  *out = list;
  *count = n;
  return SEQMIX_OK;
}

/* ---- What a physical device offers ----------------------------------------------- */

typedef struct device_facts {
  seqmix_device_info info;
  sm_vk_caps caps;
  uint8_t uuid[VK_UUID_SIZE];
  uint32_t queue_family;
  bool usable;      /* Vulkan >= 1.1 with a compute queue */
  bool portability; /* VK_KHR_portability_subset: must be enabled */
} device_facts;

static const char *vendor_name(uint32_t id) {
  switch (id) {
  case 0x1002: return "AMD";
  case 0x1010: return "Imagination Technologies";
  case 0x106b: return "Apple";
  case 0x10de: return "NVIDIA";
  case 0x13b5: return "Arm";
  case 0x14e4: return "Broadcom";
  case 0x1ae0: return "Google";
  case 0x5143: return "Qualcomm";
  case 0x8086: return "Intel";
  case VK_VENDOR_ID_MESA: return "Mesa";
  default: return NULL;
  }
}

static uint64_t uuid_key(const uint8_t *uuid) { return sm_hash64(uuid, VK_UUID_SIZE, 0); }

static void describe_driver(const VkPhysicalDeviceProperties *p,
                            const VkPhysicalDeviceDriverProperties *driver, bool have_driver,
                            char *out, size_t size) {
  if (have_driver && driver->driverInfo[0]) {
    snprintf(out, size, "%.40s %.80s", driver->driverName, driver->driverInfo);
    return;
  }
  uint32_t v = p->driverVersion;
  if (p->vendorID == 0x10de) /* NVIDIA packs 10.8.8.6 bits */
    snprintf(out, size, "%u.%u.%u.%u", v >> 22, (v >> 14) & 0xff, (v >> 6) & 0xff, v & 0x3f);
  else
    snprintf(out, size, "%u.%u.%u", VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v),
             VK_API_VERSION_PATCH(v));
}

static seqmix_status read_device(VkPhysicalDevice physical, device_facts *f) {
  memset(f, 0, sizeof *f);
  VkPhysicalDeviceProperties base;
  vkGetPhysicalDeviceProperties(physical, &base);
  if (base.apiVersion < VK_API_VERSION_1_1) {
    sm_log(SEQMIX_LOG_INFO, "vulkan backend: %s offers Vulkan %u.%u; 1.1 is needed, skipped",
           base.deviceName, VK_API_VERSION_MAJOR(base.apiVersion),
           VK_API_VERSION_MINOR(base.apiVersion));
    return SEQMIX_OK;
  }

  uint32_t ext_count = 0;
  VkResult r = vkEnumerateDeviceExtensionProperties(physical, NULL, &ext_count, NULL);
  if (r != VK_SUCCESS) return sm_vk_fail("vkEnumerateDeviceExtensionProperties", r);
  VkExtensionProperties *exts = calloc(ext_count + 1, sizeof *exts);
  if (!exts) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  r = vkEnumerateDeviceExtensionProperties(physical, NULL, &ext_count, exts);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
    free(exts);
    return sm_vk_fail("vkEnumerateDeviceExtensionProperties", r);
  }
  bool v12 = base.apiVersion >= VK_API_VERSION_1_2;
  bool have_driver = v12 || has_extension(exts, ext_count, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME);
  bool have_f16 = v12 || has_extension(exts, ext_count, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
  bool have_nv = has_extension(exts, ext_count, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME);
  bool have_amd = has_extension(exts, ext_count, VK_AMD_SHADER_CORE_PROPERTIES_EXTENSION_NAME);
  f->portability = has_extension(exts, ext_count, "VK_KHR_portability_subset");
  free(exts);

  /* Properties: one pNext chain, each link only where the device knows it. */
  VkPhysicalDeviceSubgroupProperties subgroup = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceMaintenance3Properties maintenance3 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES, .pNext = &subgroup};
  VkPhysicalDeviceIDProperties ids = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES,
                                      .pNext = &maintenance3};
  VkPhysicalDeviceDriverProperties driver = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceShaderSMBuiltinsPropertiesNV nv = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV};
  VkPhysicalDeviceShaderCorePropertiesAMD amd = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD};
  VkPhysicalDeviceProperties2 props = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                       .pNext = &ids};
  void **tail = &subgroup.pNext;
  if (have_driver) {
    *tail = &driver;
    tail = &driver.pNext;
  }
  if (have_nv) {
    *tail = &nv;
    tail = &nv.pNext;
  }
  if (have_amd) *tail = &amd;
  vkGetPhysicalDeviceProperties2(physical, &props);

  VkPhysicalDeviceShaderFloat16Int8Features f16 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  VkPhysicalDevice16BitStorageFeatures storage16 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
      .pNext = have_f16 ? &f16 : NULL};
  VkPhysicalDeviceFeatures2 features = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                        .pNext = &storage16};
  vkGetPhysicalDeviceFeatures2(physical, &features);

  uint32_t family_count = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical, &family_count, NULL);
  VkQueueFamilyProperties *families = calloc(family_count + 1, sizeof *families);
  if (!families) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  vkGetPhysicalDeviceQueueFamilyProperties(physical, &family_count, families);
  bool has_compute = false;
  for (uint32_t i = 0; i < family_count && !has_compute; ++i)
    if ((families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && families[i].queueCount > 0) {
      f->queue_family = i;
      has_compute = true;
    }
  free(families);
  if (!has_compute) {
    sm_log(SEQMIX_LOG_INFO, "vulkan backend: %s has no compute queue, skipped", base.deviceName);
    return SEQMIX_OK;
  }

  sm_vk_caps *caps = &f->caps;
  caps->props = props.properties;
  vkGetPhysicalDeviceMemoryProperties(physical, &caps->memory);
  caps->subgroup_size = subgroup.subgroupSize ? subgroup.subgroupSize : 1;
  caps->max_allocation = maintenance3.maxMemoryAllocationSize;
  caps->storage16 = storage16.storageBuffer16BitAccess;
  memcpy(f->uuid, ids.deviceUUID, VK_UUID_SIZE);

  VkPhysicalDeviceType type = caps->props.deviceType;
  bool shares_host_memory =
      type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU || type == VK_PHYSICAL_DEVICE_TYPE_CPU;
  uint32_t unused;
  caps->unified =
      shares_host_memory && sm_vk_find_memory_type(&caps->memory, ~0u,
                                                   VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                                       VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                       VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                                   &unused);

  seqmix_device_info *info = &f->info;
  snprintf(info->name, sizeof info->name, "%s", caps->props.deviceName);
  const char *vendor = vendor_name(caps->props.vendorID);
  if (vendor)
    snprintf(info->vendor, sizeof info->vendor, "%s", vendor);
  else
    snprintf(info->vendor, sizeof info->vendor, "0x%04x", caps->props.vendorID);
  describe_driver(&caps->props, &driver, have_driver, info->driver, sizeof info->driver);
  info->backend = SEQMIX_BACKEND_VULKAN;
  switch (type) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: info->kind = SEQMIX_DEVICE_DISCRETE_GPU; break;
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: info->kind = SEQMIX_DEVICE_INTEGRATED_GPU; break;
  case VK_PHYSICAL_DEVICE_TYPE_CPU: info->kind = SEQMIX_DEVICE_SOFTWARE; break;
  default: info->kind = SEQMIX_DEVICE_ACCELERATOR; break;
  }
  for (uint32_t i = 0; i < caps->memory.memoryHeapCount; ++i)
    if ((caps->memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
        caps->memory.memoryHeaps[i].size > info->memory_bytes)
      info->memory_bytes = caps->memory.memoryHeaps[i].size;
  info->local_memory_bytes = caps->props.limits.maxComputeSharedMemorySize;
  if (have_nv)
    info->compute_units = nv.shaderSMCount;
  else if (have_amd)
    info->compute_units =
        amd.shaderEngineCount * amd.shaderArraysPerEngineCount * amd.computeUnitsPerShaderArray;
  else if (type == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    info->compute_units = cores > 0 ? (uint32_t)cores : 1;
  }
  caps->compute_units = (have_nv || have_amd) ? info->compute_units : 0;
  info->subgroup_size = caps->subgroup_size;
  info->max_workgroup_size = caps->props.limits.maxComputeWorkGroupInvocations;
  info->unified_memory = caps->unified;
  info->fp16_storage = caps->storage16;
  info->fp16_arithmetic = have_f16 && f16.shaderFloat16;
  info->online_compiler = false;
  f->usable = true;
  return SEQMIX_OK;
}

/* ---- Probe ----------------------------------------------------------------------- */

static seqmix_status vk_probe(sm_device_entry **entries, size_t *count) {
  *entries = NULL;
  *count = 0;
  VkInstance instance;
  VkDebugUtilsMessengerEXT messenger;
  bool no_driver;
  seqmix_status st = create_instance(&instance, &messenger, &no_driver);
  if (st) {
    if (!no_driver) return st;
    sm_log(SEQMIX_LOG_INFO, "vulkan backend: no usable driver (%s)", seqmix_last_error());
    return SEQMIX_OK;
  }
  VkPhysicalDevice *physical = NULL;
  uint32_t n = 0;
  sm_device_entry *list = NULL;
  st = physical_devices(instance, &physical, &n);
  if (st) { /* a loader without drivers may fail here rather than list none */
    sm_log(SEQMIX_LOG_INFO, "vulkan backend: no devices (%s)", seqmix_last_error());
    st = SEQMIX_OK;
  }
  if (n == 0) goto done;
  list = calloc(n, sizeof *list);
  if (!list) {
    st = sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
    goto done;
  }
  for (uint32_t i = 0; i < n; ++i) {
    device_facts facts;
    st = read_device(physical[i], &facts);
    if (st) goto done;
    if (!facts.usable) continue;
    sm_device_entry *e = &list[*count];
    e->info = facts.info;
    e->handle[0] = i;
    e->handle[1] = (uintptr_t)uuid_key(facts.uuid);
    ++*count;
  }
done:
  if (st || *count == 0) {
    free(list);
    list = NULL;
    *count = 0;
  }
  *entries = list;
  free(physical);
  destroy_instance(instance, messenger);
  return st;
}

/* ---- Open and close ------------------------------------------------------------------ */

static seqmix_status create_logical_device(sm_device *dev, const device_facts *facts) {
  float priority = 1.0f;
  VkDeviceQueueCreateInfo queue = {
      .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
      .queueFamilyIndex = facts->queue_family,
      .queueCount = 1,
      .pQueuePriorities = &priority,
  };
  VkPhysicalDevice16BitStorageFeatures storage16 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
      .storageBuffer16BitAccess = facts->caps.storage16,
  };
  VkPhysicalDeviceFeatures2 features = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                        .pNext = &storage16};
  const char *extensions[] = {"VK_KHR_portability_subset"};
  VkDeviceCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
      .pNext = &features,
      .queueCreateInfoCount = 1,
      .pQueueCreateInfos = &queue,
      .enabledExtensionCount = facts->portability ? 1 : 0,
      .ppEnabledExtensionNames = extensions,
  };
  VkResult r = vkCreateDevice(dev->physical, &info, NULL, &dev->device);
  if (r != VK_SUCCESS) {
    dev->device = VK_NULL_HANDLE;
    return sm_vk_fail("vkCreateDevice", r);
  }
  dev->queue_family = facts->queue_family;
  vkGetDeviceQueue(dev->device, dev->queue_family, 0, &dev->queue);
  return SEQMIX_OK;
}

static seqmix_status create_command_slots(sm_device *dev) {
  VkCommandPoolCreateInfo pool_info = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
      .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
      .queueFamilyIndex = dev->queue_family,
  };
  VkResult r = vkCreateCommandPool(dev->device, &pool_info, NULL, &dev->command_pool);
  if (r != VK_SUCCESS) {
    dev->command_pool = VK_NULL_HANDLE;
    return sm_vk_fail("vkCreateCommandPool", r);
  }
  VkCommandBuffer cmds[SM_VK_SLOTS];
  VkCommandBufferAllocateInfo alloc_info = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
      .commandPool = dev->command_pool,
      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
      .commandBufferCount = SM_VK_SLOTS,
  };
  r = vkAllocateCommandBuffers(dev->device, &alloc_info, cmds);
  if (r != VK_SUCCESS) return sm_vk_fail("vkAllocateCommandBuffers", r);
  for (int i = 0; i < SM_VK_SLOTS; ++i)
    dev->slots[i].cmd = cmds[i];
  VkFenceCreateInfo fence_info = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  for (int i = 0; i < SM_VK_SLOTS; ++i) {
    r = vkCreateFence(dev->device, &fence_info, NULL, &dev->slots[i].fence);
    if (r != VK_SUCCESS) {
      dev->slots[i].fence = VK_NULL_HANDLE;
      return sm_vk_fail("vkCreateFence", r);
    }
  }
  dev->recording = -1;
  return SEQMIX_OK;
}

static void vk_close(sm_device *dev) {
  if (!dev) return;
  if (dev->device) {
    if (sm_vk_sync(dev))
      sm_log(SEQMIX_LOG_WARNING, "vulkan backend: closing after a failed sync: %s",
             seqmix_last_error());
    vkDeviceWaitIdle(dev->device);
    sm_vk_long_conv_release(dev);
    sm_vk_free(dev, dev->staging);
    sm_vk_free(dev, dev->dummy);
    sm_vk_free(dev, dev->scratch);
    sm_vk_pipelines_destroy(dev);
    for (int i = 0; i < SM_VK_SLOTS; ++i)
      if (dev->slots[i].fence) vkDestroyFence(dev->device, dev->slots[i].fence, NULL);
    /* Destroying the pool frees its command buffers. */
    if (dev->command_pool) vkDestroyCommandPool(dev->device, dev->command_pool, NULL);
    vkDestroyDevice(dev->device, NULL);
  }
  destroy_instance(dev->instance, dev->messenger);
  free(dev);
}

static seqmix_status vk_open(const sm_device_entry *entry, const sm_open_options *options,
                             sm_device **out) {
  *out = NULL;
  sm_device *dev = calloc(1, sizeof *dev);
  if (!dev) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  dev->recording = -1;
  VkPhysicalDevice *physical = NULL;
  uint32_t n = 0;
  bool no_driver;
  seqmix_status st = create_instance(&dev->instance, &dev->messenger, &no_driver);
  if (st) goto fail;
  st = physical_devices(dev->instance, &physical, &n);
  if (st) goto fail;
  device_facts facts;
  if (entry->handle[0] >= n ||
      (st = read_device(physical[entry->handle[0]], &facts)) != SEQMIX_OK || !facts.usable ||
      (uintptr_t)uuid_key(facts.uuid) != entry->handle[1]) {
    if (!st)
      st = sm_fail(SEQMIX_ERROR_DEVICE_LOST, "vulkan backend: %s (%s) is no longer listed",
                   entry->info.id, entry->info.name);
    goto fail;
  }
  dev->physical = physical[entry->handle[0]];
  dev->caps = facts.caps;
  st = create_logical_device(dev, &facts);
  if (st) goto fail;
  st = create_command_slots(dev);
  if (st) goto fail;
  snprintf(dev->cache_name, sizeof dev->cache_name, "vulkan-");
  for (size_t i = 0; i < VK_UUID_SIZE; ++i)
    snprintf(dev->cache_name + 7 + 2 * i, sizeof dev->cache_name - 7 - 2 * i, "%02x",
             facts.uuid[i]);
  strncat(dev->cache_name, ".pipelines", sizeof dev->cache_name - strlen(dev->cache_name) - 1);
  st = sm_vk_pipelines_init(dev, options->cache_dir);
  if (st) goto fail;
  st = sm_vk_alloc(dev, 256, &dev->dummy);
  if (st) goto fail;
  sm_log(SEQMIX_LOG_DEBUG, "vulkan backend: opened %s (%s), %s memory, subgroup %u",
         facts.info.name, facts.info.driver, dev->caps.unified ? "unified" : "device-local",
         dev->caps.subgroup_size);
  free(physical);
  *out = dev;
  return SEQMIX_OK;
fail:
  free(physical);
  vk_close(dev);
  return st;
}

/* ---- Ops ------------------------------------------------------------------------------ */

static bool vk_supports(sm_device *dev, const sm_op *op) {
  switch (op->kind) {
  case SM_OP_CONV1D_CAUSAL: return sm_vk_conv1d_supports(dev, op);
  case SM_OP_ATTENTION: return sm_vk_attention_supports(dev, op);
  case SM_OP_ATTENTION_MERGE: return sm_vk_merge_supports(dev, op);
  case SM_OP_SELECTIVE_SCAN: return sm_vk_selective_scan_supports(dev, op);
  case SM_OP_SSD: return sm_vk_ssd_supports(dev, op);
  case SM_OP_LINEAR_ATTENTION: return sm_vk_linear_attention_supports(dev, op);
  case SM_OP_CONV2D_DEPTHWISE:
  case SM_OP_POOL_MIXER: return sm_vk_conv2d_supports(dev, op);
  case SM_OP_LONG_CONV: return sm_vk_long_conv_supports(dev, op);
  default: return false; /* no kernel yet: the CPU fallback runs it */
  }
}

static seqmix_status vk_launch(sm_device *dev, const sm_op *op) {
  switch (op->kind) {
  case SM_OP_CONV1D_CAUSAL: return sm_vk_conv1d_launch(dev, op);
  case SM_OP_ATTENTION: return sm_vk_attention_launch(dev, op);
  case SM_OP_ATTENTION_MERGE: return sm_vk_merge_launch(dev, op);
  case SM_OP_SELECTIVE_SCAN: return sm_vk_selective_scan_launch(dev, op);
  case SM_OP_SSD: return sm_vk_ssd_launch(dev, op);
  case SM_OP_LINEAR_ATTENTION: return sm_vk_linear_attention_launch(dev, op);
  case SM_OP_CONV2D_DEPTHWISE:
  case SM_OP_POOL_MIXER: return sm_vk_conv2d_launch(dev, op);
  case SM_OP_LONG_CONV: return sm_vk_long_conv_launch(dev, op);
  default: break;
  }
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend has no kernel for it", op->name);
}

const sm_backend sm_vulkan_backend = {
    .name = "vulkan",
    .kind = SEQMIX_BACKEND_VULKAN,
    .probe = vk_probe,
    .open = vk_open,
    .close = vk_close,
    .alloc = sm_vk_alloc,
    .free = sm_vk_free,
    .write = sm_vk_write,
    .read = sm_vk_read,
    .copy = sm_vk_copy,
    .supports = vk_supports,
    .launch = vk_launch,
    .flush = sm_vk_flush,
    .sync = sm_vk_sync,
};
