#ifndef EMPORIUM_CRDKAFKA_SHIM_H
#define EMPORIUM_CRDKAFKA_SHIM_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/*
 * rd_kafka_producev is variadic, which Swift cannot call. This wrapper is the
 * one produce call Emporium makes: a topic handle, a copied key and value, headers (owned by
 * librdkafka once the call succeeds) and a per-message opaque that comes back
 * in the delivery report.
 */
static inline rd_kafka_resp_err_t emporium_produce(rd_kafka_t *rk,
                                                   rd_kafka_topic_t *topic,
                                                   int32_t partition,
                                                   const void *key,
                                                   size_t key_len,
                                                   const void *value,
                                                   size_t value_len,
                                                   rd_kafka_headers_t *headers,
                                                   void *opaque) {
        return rd_kafka_producev(
            rk, RD_KAFKA_V_RKT(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE(value, value_len),
            RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}

#endif
