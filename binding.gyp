{
  "targets": [
    {
      "target_name": "tapestry_native",
      "sources": ["native/addon.c", "native/util.c", "native/tap.c", "native/udp.c", "native/poll.c", "native/csum.c", "native/tso.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_GNU_SOURCE"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
