module example.com/greeter-go

go 1.22
