"""Output stage beside codegen: the integer graph written as a dense int8 .tflite
(`mcuqp.export.tflite` is the flatbuffer writer, `mcuqp.export.graph` maps IR ops onto it).
Kept empty so that `import mcuqp` can make the subpackage callable cheaply."""
