// cri-go-client: a CRI client built on grpc-go, dialling the socket by its path
// exactly as kubelet and crictl ≤ 1.26 do (the path becomes the HTTP/2
// :authority). Requests and responses are protobuf JSON with the .proto field
// names; any RuntimeService or ImageService method can be called by its name.
//
//	cri-go-client -socket PATH call METHOD [JSON]   one call; the response on stdout
//	cri-go-client -socket PATH serve                JSON lines on stdin, answers on stdout
//
// serve keeps one connection and runs each request line concurrently:
//
//	{"id":1,"method":"Version","request":{},"repeat":1,"timeout_ms":60000}
//	{"id":1,"code":0,"message":"","response":{...},"responses":[...],"micros":[812]}
//
// micros has one entry per repetition: the client-side latency of the call alone
// (marshalling and JSON excluded). responses is set for server-streaming methods.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/golang/protobuf/jsonpb"
	"github.com/golang/protobuf/proto"
	descpb "github.com/golang/protobuf/protoc-gen-go/descriptor"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	_ "crib/cri"
)

type method struct {
	fullName  string
	input     reflect.Type
	output    reflect.Type
	streaming bool
}

// methods reads the services from the file descriptor the generated code registered.
func methods() (map[string]method, error) {
	gz := proto.FileDescriptor("cri/api.proto")
	if gz == nil {
		return nil, fmt.Errorf("cri/api.proto is not registered")
	}
	r, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	raw, err := ioutil.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var fd descpb.FileDescriptorProto
	if err := proto.Unmarshal(raw, &fd); err != nil {
		return nil, err
	}
	out := map[string]method{}
	for _, svc := range fd.GetService() {
		for _, m := range svc.GetMethod() {
			in := proto.MessageType(strings.TrimPrefix(m.GetInputType(), "."))
			res := proto.MessageType(strings.TrimPrefix(m.GetOutputType(), "."))
			if in == nil || res == nil {
				return nil, fmt.Errorf("%s: message types not registered", m.GetName())
			}
			out[m.GetName()] = method{
				fullName:  fmt.Sprintf("/%s.%s/%s", fd.GetPackage(), svc.GetName(), m.GetName()),
				input:     in.Elem(),
				output:    res.Elem(),
				streaming: m.GetServerStreaming(),
			}
		}
	}
	return out, nil
}

// dial is kubelet's (pkg/kubelet/cri/remote, 1.24–1.26): the path as target, a unix dialer.
func dial(ctx context.Context, path string, maxMsg int) (*grpc.ClientConn, error) {
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", addr)
	}
	return grpc.DialContext(ctx, path,
		grpc.WithInsecure(),
		grpc.WithContextDialer(dialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)),
	)
}

type request struct {
	ID        json.RawMessage `json:"id"`
	Method    string          `json:"method"`
	Request   json.RawMessage `json:"request"`
	Repeat    int             `json:"repeat"`
	TimeoutMs int             `json:"timeout_ms"`
}

type answer struct {
	ID        json.RawMessage   `json:"id,omitempty"`
	Code      int               `json:"code"`
	Message   string            `json:"message"`
	Response  json.RawMessage   `json:"response,omitempty"`
	Responses []json.RawMessage `json:"responses,omitempty"`
	Micros    []int64           `json:"micros"`
}

var marshaler = jsonpb.Marshaler{OrigName: true, EmitDefaults: true}

func toJSON(m proto.Message) json.RawMessage {
	s, err := marshaler.MarshalToString(m)
	if err != nil {
		return json.RawMessage(fmt.Sprintf("%q", "marshal: "+err.Error()))
	}
	return json.RawMessage(s)
}

func invoke(conn *grpc.ClientConn, all map[string]method, req request) answer {
	ans := answer{ID: req.ID, Micros: []int64{}}
	m, ok := all[req.Method]
	if !ok {
		ans.Code, ans.Message = -1, "no such method: "+req.Method
		return ans
	}
	in := reflect.New(m.input).Interface().(proto.Message)
	if len(req.Request) > 0 && string(req.Request) != "null" {
		if err := (&jsonpb.Unmarshaler{}).Unmarshal(bytes.NewReader(req.Request), in); err != nil {
			ans.Code, ans.Message = -1, "request: "+err.Error()
			return ans
		}
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	repeat := req.Repeat
	if repeat <= 0 {
		repeat = 1
	}
	for i := 0; i < repeat; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		var err error
		if m.streaming {
			ans.Responses, err = stream(ctx, conn, m, in)
		} else {
			out := reflect.New(m.output).Interface().(proto.Message)
			err = conn.Invoke(ctx, m.fullName, in, out)
			if err == nil && i == repeat-1 {
				ans.Response = toJSON(out)
			}
		}
		ans.Micros = append(ans.Micros, time.Since(start).Microseconds())
		cancel()
		if err != nil {
			s := status.Convert(err)
			ans.Code, ans.Message = int(s.Code()), s.Message()
			return ans
		}
	}
	return ans
}

func stream(ctx context.Context, conn *grpc.ClientConn, m method, in proto.Message) ([]json.RawMessage, error) {
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, m.fullName)
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(in); err != nil {
		return nil, err
	}
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	out := []json.RawMessage{}
	for {
		msg := reflect.New(m.output).Interface().(proto.Message)
		if err := s.RecvMsg(msg); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, err
		}
		out = append(out, toJSON(msg))
	}
}

func main() {
	socket := flag.String("socket", "/run/crib/crib.sock", "the CRI socket's path")
	maxMsg := flag.Int("max-msg", 16*1024*1024, "largest message sent or received, as kubelet's maxMsgSize")
	flag.Parse()
	all, err := methods()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	conn, err := dial(context.Background(), *socket, *maxMsg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer conn.Close()

	switch flag.Arg(0) {
	case "call":
		req := request{Method: flag.Arg(1), Request: json.RawMessage(flag.Arg(2))}
		ans := invoke(conn, all, req)
		if ans.Code != 0 {
			fmt.Fprintf(os.Stderr, "%s: code %d: %s\n", req.Method, ans.Code, ans.Message)
			os.Exit(1)
		}
		if ans.Responses != nil {
			for _, r := range ans.Responses {
				fmt.Println(string(r))
			}
		} else {
			fmt.Println(string(ans.Response))
		}
	case "serve":
		var mu sync.Mutex
		var wg sync.WaitGroup
		out := bufio.NewWriter(os.Stdout)
		in := bufio.NewReaderSize(os.Stdin, 1<<20)
		for {
			line, err := in.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				var req request
				if jerr := json.Unmarshal(line, &req); jerr != nil {
					mu.Lock()
					b, _ := json.Marshal(answer{Code: -1, Message: "bad request line: " + jerr.Error(), Micros: []int64{}})
					out.Write(append(b, '\n'))
					out.Flush()
					mu.Unlock()
				} else {
					wg.Add(1)
					go func() {
						defer wg.Done()
						b, _ := json.Marshal(invoke(conn, all, req))
						mu.Lock()
						out.Write(append(b, '\n'))
						out.Flush()
						mu.Unlock()
					}()
				}
			}
			if err != nil {
				break
			}
		}
		wg.Wait()
	default:
		fmt.Fprintln(os.Stderr, "usage: cri-go-client -socket PATH call METHOD [JSON] | serve")
		os.Exit(2)
	}
}
