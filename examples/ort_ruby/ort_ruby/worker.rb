# ORT's Ruby worker: loads a handler as Lambda's Ruby runtime does and runs it for every event
# ORT sends over the worker protocol (docs/worker-protocol.md): length-prefixed JSON headers
# and raw bodies on the Unix socket $ORT_WORKER_SOCKET. stdout and stderr are the function's
# log, never the channel.
#
# Handlers: "handler.handler" is the method `handler` defined at the top level of handler.rb;
# "lib/orders.Orders::Api.create" the class method `create` of Orders::Api in lib/orders.rb.
# Both are called as `handler(event:, context:)`.

require "json"
require "socket"

$stdout.sync = true # what the handler writes reaches ORT before its result
$stderr.sync = true
WORKER_FILE = File.expand_path(__FILE__)
TASK_ROOT = ENV.fetch("LAMBDA_TASK_ROOT", Dir.pwd)
ENV.delete("TRACEPARENT")
$LOAD_PATH.unshift(TASK_ROOT) unless $LOAD_PATH.include?(TASK_ROOT)

# -- the protocol -------------------------------------------------------------------------

def send_message(channel, header, body = "")
  head = JSON.generate(header).b
  body = body.b
  channel.write([head.bytesize].pack("N"), head, [body.bytesize].pack("N"), body)
end

def read_part(channel)
  prefix = channel.read(4)
  exit(0) if prefix.nil? || prefix.bytesize < 4 # ORT closed the socket: the sandbox ends
  size = prefix.unpack1("N")
  data = size.zero? ? "".b : channel.read(size)
  exit(0) if data.nil? || data.bytesize < size
  data
end

def receive(channel)
  header = JSON.parse(read_part(channel))
  [header, read_part(channel)]
end

def error_json(error_type, message, backtrace = [])
  JSON.generate(
    "errorType" => error_type,
    "errorMessage" => message.to_s.encode("UTF-8", invalid: :replace, undef: :replace),
    "stackTrace" => user_frames(backtrace)
  )
end

def user_frames(backtrace)
  (backtrace || []).reject { |frame| frame.start_with?(WORKER_FILE) }
end

# -- the context, as Lambda's Ruby runtime gives it ------------------------------------------

class LambdaContext
  attr_reader :aws_request_id, :invoked_function_arn, :log_group_name, :log_stream_name,
              :function_name, :memory_limit_in_mb, :function_version, :identity,
              :client_context, :deadline_ms, :trace_id, :tenant_id, :traceparent

  def initialize(fields)
    @aws_request_id = fields["awsRequestId"]
    @invoked_function_arn = fields["invokedFunctionArn"]
    @log_group_name = fields["logGroupName"]
    @log_stream_name = fields["logStreamName"]
    @function_name = fields["functionName"]
    @memory_limit_in_mb = fields["memoryLimitInMB"]
    @function_version = fields["functionVersion"]
    @identity = fields["identity"]
    @client_context = fields["clientContext"]
    @deadline_ms = fields["deadlineMs"].to_i
    @trace_id = fields["traceId"]
    @tenant_id = fields["tenantId"]
    @traceparent = fields["traceparent"]
  end

  def get_remaining_time_in_millis
    [@deadline_ms - (Time.now.to_f * 1000).to_i, 0].max
  end
end

# -- loading the handler ------------------------------------------------------------------

class InitError < StandardError
  attr_reader :error_type, :frames

  def initialize(error_type, message, frames = [])
    super(message)
    @error_type = error_type
    @frames = frames
  end
end

def load_handler(handler)
  folder, slash, base = handler.rpartition("/") # "lib/orders.Orders::Api.create"
  name, dot, rest = base.partition(".")
  file = "#{folder}#{slash}#{name}"
  if dot.empty? || name.empty? || rest.empty?
    raise InitError.new("Runtime.MalformedHandlerName",
                        "Bad handler #{handler}: use FILE.METHOD or FILE.Class::Name.METHOD")
  end
  if file.split("/").include?("..") || file.start_with?("/")
    raise InitError.new("Runtime.MalformedHandlerName", "Bad handler #{handler}: '../' not allowed")
  end
  path = File.join(TASK_ROOT, "#{file}.rb")
  unless File.file?(path)
    raise InitError.new("Runtime.ImportModuleError", "Cannot load #{file}.rb: no such file in #{TASK_ROOT}")
  end
  begin
    require path
  rescue SyntaxError => e
    raise InitError.new("Runtime.UserCodeSyntaxError", "#{e.class}: #{e.message}", e.backtrace)
  rescue ScriptError, StandardError => e
    raise InitError.new("Runtime.ImportModuleError", "#{e.class}: #{e.message}", e.backtrace)
  end
  owner_path, dot, method = rest.rpartition(".")
  if dot.empty? # a method defined at the top level of the file
    unless Object.private_method_defined?(method) || Object.method_defined?(method)
      raise InitError.new("Runtime.HandlerNotFound", "#{file}.rb defines no method #{method}")
    end
    receiver = Object.new
    return ->(event, context) { receiver.send(method, event: event, context: context) }
  end
  begin
    owner = Object.const_get(owner_path)
  rescue NameError => e
    raise InitError.new("Runtime.HandlerNotFound", "#{file}.rb defines no #{owner_path}: #{e.message}")
  end
  unless owner.respond_to?(method)
    raise InitError.new("Runtime.HandlerNotFound", "#{owner_path} has no method #{method}")
  end
  ->(event, context) { owner.public_send(method, event: event, context: context) }
end

def load_preloads
  (ENV["ORT_PRELOAD"] || "").split(File::PATH_SEPARATOR).reject(&:empty?).each do |preload|
    begin
      load File.expand_path(preload, TASK_ROOT)
    rescue ScriptError, StandardError => e
      raise InitError.new("Runtime.InitError",
                          "ORT_PRELOAD #{preload} failed to load: #{e.class}: #{e.message}",
                          e.backtrace)
    end
  end
end

# -- events -------------------------------------------------------------------------------

# A CloudEvent as Ruby code expects it: a Hash with the spec's attribute names, and binary
# data (data_base64 on the wire) as a binary String in "data".
def cloudevent(event)
  return event unless event.is_a?(Hash) && event.key?("data_base64")
  event = event.dup
  event["data"] = event.delete("data_base64").to_s.unpack1("m")
  event
end

$ort_spans = [] # what a preload records; moved into each result's "spans"

def invoke(handler, header, body)
  event = JSON.parse(body)
  event = cloudevent(event) if header["signature"] == "cloudevent"
  context = LambdaContext.new(header["context"] || {})
  ENV["TRACEPARENT"] = context.traceparent if context.traceparent
  call = -> { handler.call(event, context) }
  around = $ort_around_handler # set by a preload: called around every invocation
  result = around ? around.call(context, call) : call.call
  begin
    [true, JSON.generate(result)]
  rescue JSON::GeneratorError, Encoding::UndefinedConversionError => e
    [false, error_json("Runtime.MarshalError", "Unable to marshal response: #{e.message}")]
  end
ensure
  ENV.delete("TRACEPARENT")
end

def main
  channel = UNIXSocket.new(ENV.fetch("ORT_WORKER_SOCKET"))
  begin
    load_preloads
    handler = load_handler(ENV.fetch("_HANDLER", ""))
  rescue InitError => e
    send_message(channel, { "type" => "init_error" }, error_json(e.error_type, e.message, e.frames))
    exit(1)
  end
  send_message(channel, { "type" => "ready" })
  loop do
    header, body = receive(channel)
    next unless header["type"] == "invoke"
    reply = { "type" => "result", "id" => header["id"] }
    exiting = nil
    begin
      ok, answer = invoke(handler, header, body)
    rescue SystemExit, SignalException, NoMemoryError => e # the handler cannot go on
      ok, answer, exiting = false, error_json(e.class.name, e.message, e.backtrace), e
    rescue Exception => e # rubocop:disable Lint/RescueException: every error is the caller's
      ok, answer = false, error_json(e.class.name, e.message, e.backtrace)
    end
    reply["ok"] = ok
    reply["exiting"] = true if exiting
    unless $ort_spans.empty?
      reply["spans"] = $ort_spans.dup
      $ort_spans.clear
    end
    send_message(channel, reply, answer)
    exit(exiting.is_a?(SystemExit) ? exiting.status : 1) if exiting
  end
end

main
