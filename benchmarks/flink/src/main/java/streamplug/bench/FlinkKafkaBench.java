package streamplug.bench;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.UUID;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.api.common.typeinfo.TypeHint;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * One benchmark run of Flink's own Kafka connector: KafkaSource -> identity map -> KafkaSink,
 * bounded, in a local MiniCluster inside this JVM, checkpoints every second.
 *
 * <p>Arguments are key=value: bootstrap, in, out, guarantee (NONE, AT_LEAST_ONCE,
 * EXACTLY_ONCE), keyed (true/false), parallelism, checkpoint_ms, stop (optional
 * "partition:offset,..." end offsets; default: the topic's end at start). The last stdout line
 * is {@code RESULT {...}}: the wall-clock window around {@code execute()}, this process's CPU
 * time in that window, and its own peak resident memory (VmHWM of /proc/self/status).
 */
public final class FlinkKafkaBench {

  /** Values unchanged; the map and the serializer add no work of their own. */
  static final class Identity<T> implements MapFunction<T, T> {
    @Override
    public T map(T value) {
      return value;
    }
  }

  static final class RawBytes implements SerializationSchema<byte[]> {
    @Override
    public byte[] serialize(byte[] element) {
      return element;
    }
  }

  /** Key and value as they came, no KafkaRecord-like wrapper beyond Flink's Tuple2. */
  static final class KeyValueIn implements KafkaRecordDeserializationSchema<Tuple2<byte[], byte[]>> {
    @Override
    public void deserialize(
        ConsumerRecord<byte[], byte[]> record, Collector<Tuple2<byte[], byte[]>> out) {
      out.collect(Tuple2.of(record.key(), record.value()));
    }

    @Override
    public TypeInformation<Tuple2<byte[], byte[]>> getProducedType() {
      return TypeInformation.of(new TypeHint<Tuple2<byte[], byte[]>>() {});
    }
  }

  static final class KeyValueOut implements KafkaRecordSerializationSchema<Tuple2<byte[], byte[]>> {
    private final String topic;

    KeyValueOut(String topic) {
      this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
        Tuple2<byte[], byte[]> element, KafkaSinkContext context, Long timestamp) {
      return new ProducerRecord<>(topic, null, timestamp, element.f0, element.f1);
    }
  }

  private static long cpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  private static long vmHwmKb() throws Exception {
    for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
      if (line.startsWith("VmHWM:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    }
    return -1;
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = new HashMap<>();
    for (String a : argv) {
      int eq = a.indexOf('=');
      if (eq < 0) {
        throw new IllegalArgumentException("argument " + a + " is not key=value");
      }
      args.put(a.substring(0, eq), a.substring(eq + 1));
    }
    String bootstrap = args.get("bootstrap");
    String in = args.get("in");
    String out = args.get("out");
    DeliveryGuarantee guarantee = DeliveryGuarantee.valueOf(args.getOrDefault("guarantee", "EXACTLY_ONCE"));
    boolean keyed = Boolean.parseBoolean(args.getOrDefault("keyed", "false"));
    int parallelism = Integer.parseInt(args.getOrDefault("parallelism", "1"));
    long checkpointMs = Long.parseLong(args.getOrDefault("checkpoint_ms", "1000"));

    OffsetsInitializer stop = OffsetsInitializer.latest();
    String stopArg = args.getOrDefault("stop", "");
    if (!stopArg.isEmpty()) {
      Map<TopicPartition, Long> ends = new HashMap<>();
      for (String part : stopArg.split(",")) {
        String[] po = part.split(":");
        ends.put(new TopicPartition(in, Integer.parseInt(po[0])), Long.parseLong(po[1]));
      }
      stop = OffsetsInitializer.offsets(ends);
    }

    StreamExecutionEnvironment env =
        StreamExecutionEnvironment.createLocalEnvironment(parallelism, new Configuration());
    if (guarantee != DeliveryGuarantee.NONE) {
      env.enableCheckpointing(checkpointMs);
    }
    String group = "bench-flink-" + UUID.randomUUID();
    String txPrefix = "bench-flink-" + UUID.randomUUID().toString().substring(0, 8);

    if (keyed) {
      KafkaSource<Tuple2<byte[], byte[]>> source =
          KafkaSource.<Tuple2<byte[], byte[]>>builder()
              .setBootstrapServers(bootstrap)
              .setTopics(in)
              .setGroupId(group)
              .setStartingOffsets(OffsetsInitializer.earliest())
              .setBounded(stop)
              .setDeserializer(new KeyValueIn())
              .build();
      KafkaSink<Tuple2<byte[], byte[]>> sink =
          KafkaSink.<Tuple2<byte[], byte[]>>builder()
              .setBootstrapServers(bootstrap)
              .setRecordSerializer(new KeyValueOut(out))
              .setDeliveryGuarantee(guarantee)
              .setTransactionalIdPrefix(txPrefix)
              // The broker caps transactions at 15 minutes; the sink's default is one hour.
              .setProperty("transaction.timeout.ms", "600000")
              .build();
      DataStream<Tuple2<byte[], byte[]>> stream =
          env.fromSource(source, WatermarkStrategy.noWatermarks(), "in");
      stream.map(new Identity<Tuple2<byte[], byte[]>>()).returns(new KeyValueIn().getProducedType()).sinkTo(sink);
    } else {
      KafkaSource<byte[]> source =
          KafkaSource.<byte[]>builder()
              .setBootstrapServers(bootstrap)
              .setTopics(in)
              .setGroupId(group)
              .setStartingOffsets(OffsetsInitializer.earliest())
              .setBounded(stop)
              .setDeserializer(KafkaRecordDeserializationSchema.valueOnly(ByteArrayDeserializer.class))
              .build();
      KafkaSink<byte[]> sink =
          KafkaSink.<byte[]>builder()
              .setBootstrapServers(bootstrap)
              .setRecordSerializer(
                  KafkaRecordSerializationSchema.<byte[]>builder()
                      .setTopic(out)
                      .setValueSerializationSchema(new RawBytes())
                      .build())
              .setDeliveryGuarantee(guarantee)
              .setTransactionalIdPrefix(txPrefix)
              .setProperty("transaction.timeout.ms", "600000")
              .build();
      DataStream<byte[]> stream = env.fromSource(source, WatermarkStrategy.noWatermarks(), "in");
      stream.map(new Identity<byte[]>()).returns(byte[].class).sinkTo(sink);
    }

    long cpu0 = cpuNanos();
    long t0 = System.currentTimeMillis();
    env.execute("bench-flink-" + guarantee);
    long t1 = System.currentTimeMillis();
    long cpu1 = cpuNanos();
    System.out.println(
        "RESULT {\"t_start\": " + (t0 / 1000.0) + ", \"t_end\": " + (t1 / 1000.0)
            + ", \"cpu\": " + ((cpu1 - cpu0) / 1e9) + ", \"vmhwm_kb\": " + vmHwmKb()
            + ", \"version\": \"flink " + org.apache.flink.runtime.util.EnvironmentInformation.getVersion()
            + ", flink-connector-kafka " + KafkaSource.class.getPackage().getImplementationVersion()
            + ", kafka-clients " + org.apache.kafka.common.utils.AppInfoParser.getVersion() + "\"}");
    // MiniCluster leaves non-daemon threads behind on some versions; the run is over.
    System.exit(0);
  }
}
