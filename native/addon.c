/* Module entry: the table of exported functions. Context-aware, so worker threads can load it. */
#include "util.h"

napi_value tap_open(napi_env, napi_callback_info);
napi_value tap_open_in_netns(napi_env, napi_callback_info);
napi_value tap_set_persist(napi_env, napi_callback_info);
napi_value tap_set_offload(napi_env, napi_callback_info);
napi_value tap_set_vnet_hdr_size(napi_env, napi_callback_info);
napi_value close_fd(napi_env, napi_callback_info);
napi_value read_batch(napi_env, napi_callback_info);
napi_value write_batch(napi_env, napi_callback_info);
napi_value udp_open(napi_env, napi_callback_info);
napi_value udp_set_option(napi_env, napi_callback_info);
napi_value udp_recv_batch_js(napi_env, napi_callback_info);
napi_value udp_send_batch(napi_env, napi_callback_info);
napi_value rx_start(napi_env, napi_callback_info);
napi_value udp_rx_start(napi_env, napi_callback_info);
napi_value rx_stop(napi_env, napi_callback_info);
napi_value rx_budget(napi_env, napi_callback_info);
napi_value udp_attach_steering(napi_env, napi_callback_info);
napi_value tap_set_steering(napi_env, napi_callback_info);
napi_value busy_poll(napi_env, napi_callback_info);
napi_value thread_name(napi_env, napi_callback_info);
napi_value csum_add(napi_env, napi_callback_info);
napi_value tso_segment(napi_env, napi_callback_info);

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"tapOpen", NULL, tap_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tapOpenInNetns", NULL, tap_open_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tapSetPersist", NULL, tap_set_persist, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tapSetOffload", NULL, tap_set_offload, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tapSetVnetHdrSize", NULL, tap_set_vnet_hdr_size, NULL, NULL, NULL, napi_enumerable, NULL},
    {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"readBatch", NULL, read_batch, NULL, NULL, NULL, napi_enumerable, NULL},
    {"writeBatch", NULL, write_batch, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpSetOption", NULL, udp_set_option, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpRecvBatch", NULL, udp_recv_batch_js, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpSendBatch", NULL, udp_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
    {"rxStart", NULL, rx_start, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpRxStart", NULL, udp_rx_start, NULL, NULL, NULL, napi_enumerable, NULL},
    {"rxStop", NULL, rx_stop, NULL, NULL, NULL, napi_enumerable, NULL},
    {"rxBudget", NULL, rx_budget, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpAttachSteering", NULL, udp_attach_steering, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tapSetSteering", NULL, tap_set_steering, NULL, NULL, NULL, napi_enumerable, NULL},
    {"busyPoll", NULL, busy_poll, NULL, NULL, NULL, napi_enumerable, NULL},
    {"threadName", NULL, thread_name, NULL, NULL, NULL, napi_enumerable, NULL},
    {"csumAdd", NULL, csum_add, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tsoSegment", NULL, tso_segment, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
